"""The workbench (`poxi web`): a local page to draft, check and export; runs in the background.

app (routes), runs (background drafts and their records), guard (loopback origin, secrets kept off the page),
static (the page).
"""
