"""The workbench in headless Chromium (Debian's chromium + chromium-driver) driven by Selenium.

A real uvicorn server on a free loopback port serves the app with a stand-in for chain.draft that emits
the chain's events and runs the real check, so a run takes a second and the page is tested apart from
the chain (tests/drafting/test_chain.py and test_draft_e2e.py test that). Screenshots go to
$POXI_SCREENSHOT_DIR (default: the test's tmp dir).
"""

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
    pytest.skip("needs Debian's chromium and chromium-driver", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver")
uvicorn = pytest.importorskip("uvicorn")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from pipeline.config import load_config  # noqa: E402
from pipeline.web.app import create_app  # noqa: E402
from webfakes import live_server  # noqa: E402

NOTE = """区数据局党支部2024年度组织生活会，主题是党纪学习教育。
查摆的问题：
1. 理论学习流于形式，全年集中学习10次，其中7次是读文件。
2. 联系服务群众不够经常，全年到窗口和社区调研仅4次。
3. 数据共享推进慢，2个部门的数据接口拖了半年。
4. 执行财经纪律不严，1笔差旅费报销手续不全。"""
COPIED = "对理论学习的紧迫性、重要性认识不够，思想上没有把理论学习作为“硬指标”“硬任务”，还没能做到自觉自愿持之以恒。"
BODIES = [
    "理论学习的自觉性不强。支部把学习当成完成规定动作，全年集中学习10次，其中7次是读文件，研讨交流少。" + COPIED,
    "群众观点树得不牢。党员习惯在办公室处理数据工单，全年到窗口和社区调研仅4次，对办事群众的难处了解不深。",
    "担当作为的劲头不足。面对跨部门协调的难题存在等靠思想，2个部门的数据接口拖了半年，没有主动上门推动解决。",
    "纪律规矩意识不够强。对财经纪律的严肃性认识不足，1笔差旅费报销手续不全，日常提醒和监督检查不够经常。",
]


HEADINGS = ["理论学习的自觉性不强", "群众观点树得不牢", "担当作为的劲头不足", "纪律规矩意识不够强"]
NUMBERS = "一二三四"


@dataclass
class Drafted:
    text: str
    sections: list
    check: dict
    passed: bool
    stats: dict = field(default_factory=dict)


def page_draft(gate: threading.Event | None = None):
    """Stands in for chain.draft (this file tests the page, not the chain): the contract's events for four
    sections, a record, and the real check, so the copied sentence is marked. With `gate`, section 2 waits
    for it: the run is then still going server-side."""
    from pipeline.checks.runner import check_text

    def draft(note, config, *, chat=None, on_event=None, cancel=None, run_id=None):
        record = config.runs_dir / run_id / "record.json"
        record.parent.mkdir(parents=True, exist_ok=True)
        write = lambda **kw: record.write_text(json.dumps({"run_id": run_id, "note": note, "model": "fake", **kw},
                                                          ensure_ascii=False), encoding="utf-8")  # noqa: E731
        write(status="running")
        on_event({"type": "step", "step": "plan", "message": f"{len(BODIES)} 条原因"})
        done = []
        for index, body in enumerate(BODIES):
            if cancel.is_set():
                break
            text = f"（{NUMBERS[index]}）{body}"
            on_event({"type": "section_start", "index": index, "heading": HEADINGS[index]})
            for k in range(0, len(text), 8):
                on_event({"type": "token", "index": index, "text": text[k : k + 8]})
                if gate is not None and index == 1 and k == 0:
                    gate.wait(20)
            on_event({"type": "section_done", "index": index, "text": text})
            done.append(text)
        text = "\n".join(done)
        check = check_text(text, corpus_dir=config.corpus, note_text=note).to_dict()
        status = "cancelled" if cancel.is_set() else "done"
        write(status=status, text=text, check=check)
        on_event({"type": "done"})
        return Drafted(text, [{"text": t} for t in done], check, bool(check.get("passed")))

    return draft


@pytest.fixture
def gate():
    return threading.Event()


@pytest.fixture
def gated():
    return False  # a test parametrizes this to True to hold the model on section 2


@pytest.fixture
def token():
    return None  # a test parametrizes this to run the server as for a team (--allow-remote)


@pytest.fixture
def server(tmp_path, gate, gated, token):
    config = load_config({"cache": tmp_path / "cache"})
    app = create_app(config, chat_factory=lambda cfg: None, draft_fn=page_draft(gate if gated else None), token=token)
    with live_server(app) as url:
        yield url
        gate.set()


@pytest.fixture
def browser(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()


def wait(driver, seconds=20):
    return WebDriverWait(driver, seconds)


def screenshot(driver, name, tmp_path):
    folder = Path(os.environ.get("POXI_SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(folder / name))


def paste(browser, text):
    note = browser.find_element(By.ID, "note")
    browser.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('input'));", note, text)


def test_paste_run_see_copied_span_and_download_docx(server, browser, tmp_path):
    from docx import Document

    browser.get(server)
    paste(browser, NOTE)
    browser.find_element(By.ID, "start").click()
    mark = wait(browser).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#checked mark.copied")))
    assert mark.text == COPIED
    assert "seed-2021-dangshi/" in mark.get_attribute("title")
    mark.click()
    source = browser.find_element(By.ID, "source")
    assert source.is_displayed() and "来源：范文 seed-2021-dangshi/" in source.text
    assert "检查未通过" in browser.find_element(By.ID, "check-summary").text
    assert COPIED in browser.find_element(By.ID, "draft").get_attribute("value")
    assert "已完成" in browser.find_element(By.ID, "history").text
    browser.set_window_size(1400, 1400)  # tall enough to show the source box under the marked text
    screenshot(browser, "workbench.png", tmp_path)

    browser.find_element(By.ID, "dl-docx").click()
    deadline = time.time() + 20
    while not (files := [p for p in browser.downloads.glob("*.docx")]):
        assert time.time() < deadline, "no .docx downloaded"
        time.sleep(0.1)
    time.sleep(0.3)
    text = "\n".join(p.text for p in Document(str(files[0])).paragraphs)
    assert COPIED in text and "**" not in text


def test_edit_and_recheck_clears_the_mark(server, browser):
    browser.get(server)
    paste(browser, NOTE)
    browser.find_element(By.ID, "start").click()
    wait(browser).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#checked mark.copied")))
    draft = browser.find_element(By.ID, "draft")
    rewritten = draft.get_attribute("value").replace(COPIED, "本支部把理论学习当成软任务，学了不少却很少对照数据共享工作去想。")
    browser.execute_script("arguments[0].value = arguments[1];", draft, rewritten)
    browser.find_element(By.ID, "check").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "check-summary"), "与范文相同的句子：0 句"))
    assert not browser.find_elements(By.CSS_SELECTOR, "#checked mark.copied")


@pytest.mark.parametrize("gated", [True])
def test_reload_reattaches_and_cancel_keeps_finished_sections(server, browser, gate, tmp_path):
    browser.get(server)
    paste(browser, NOTE)
    browser.find_element(By.ID, "start").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "live"), "（一）理论学习的自觉性不强"))
    browser.refresh()  # the model is held on section 2: the run is still going server-side
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "live"), "（一）理论学习的自觉性不强"))
    assert browser.find_element(By.ID, "note").get_attribute("value") == NOTE
    assert browser.find_element(By.ID, "run-status").text == "运行中"
    screenshot(browser, "workbench-running.png", tmp_path)
    browser.find_element(By.ID, "cancel").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "steps"), "正在取消"))  # the server has the cancel
    gate.set()
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "run-status"), "已取消"))
    value = wait(browser).until(lambda d: d.find_element(By.ID, "draft").get_attribute("value"))
    # the section being written when cancel came is finished; nothing after it is started
    assert value.startswith("（一）理论学习的自觉性不强。") and "（二）群众观点树得不牢。" in value
    assert "担当作为" not in value


def test_bad_upload_shows_a_message(server, browser, tmp_path):
    binary = tmp_path / "photo.txt"
    binary.write_bytes(bytes(range(256)) * 50)
    browser.get(server)
    browser.find_element(By.ID, "upload").send_keys(str(binary))
    message = wait(browser).until(EC.visibility_of_element_located((By.ID, "note-msg")))
    wait(browser).until(lambda d: message.text)
    assert "不是文本文件" in message.text and "photo.txt" in message.text
    good = tmp_path / "note.txt"
    good.write_bytes(NOTE.encode("gb18030"))
    browser.find_element(By.ID, "upload").send_keys(str(good))
    wait(browser).until(lambda d: d.find_element(By.ID, "note").get_attribute("value") == NOTE)


@pytest.mark.parametrize("gated", [True])
def test_a_second_draft_shows_its_place_in_the_queue_and_cancel_removes_it(server, browser, gate, tmp_path):
    import urllib.request
    from urllib.parse import quote

    other = urllib.request.Request(server + "api/runs", data=json.dumps({"note": NOTE}).encode(), method="POST",
                                   headers={"Content-Type": "application/json", "X-Poxi-Writer": quote("李四")})
    with urllib.request.urlopen(other, timeout=10) as response:  # another writer's draft, held on section 2
        assert json.load(response)["status"] == "running"
    browser.get(server)
    paste(browser, NOTE)
    browser.find_element(By.CSS_SELECTOR, "input[name=backend][value=embedded]").click()  # the lane 李四 holds
    browser.find_element(By.ID, "start").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "run-status"), "排队中：第 1 位"))
    assert "预计约" in browser.find_element(By.ID, "run-status").text
    assert "李四" not in browser.find_element(By.ID, "history").text  # another writer's run is not listed
    screenshot(browser, "workbench-queued.png", tmp_path)
    browser.find_element(By.ID, "cancel").click()
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "run-status"), "已取消"))
    assert "已从队列中取消" in browser.find_element(By.ID, "steps").text
    gate.set()


TOKEN = "team-token-0123456789abcdef"


@pytest.mark.parametrize("token", [TOKEN])
def test_team_page_takes_the_token_from_the_link_once(server, browser, tmp_path):
    browser.get(server)
    wait(browser).until(EC.visibility_of_element_located((By.ID, "login")))  # no token yet: the page asks for it
    browser.get("about:blank")
    browser.get(server + "#token=" + TOKEN)
    wait(browser).until(EC.invisibility_of_element_located((By.ID, "login")))
    assert "token" not in browser.current_url  # traded for a cookie, gone from the address bar
    cookie = next(c for c in browser.get_cookies() if c["name"].startswith("poxi_token"))
    assert cookie["httpOnly"] and cookie["value"] == TOKEN
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "run-msg"), "填写你的名字"))
    writer = browser.find_element(By.ID, "writer")
    writer.send_keys("张三")
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'));", writer)
    paste(browser, NOTE)
    browser.find_element(By.ID, "start").click()
    mark = wait(browser).until(EC.visibility_of_element_located((By.CSS_SELECTOR, "#checked mark.copied")))
    assert mark.text == COPIED
    browser.refresh()  # the cookie and the name are kept: the history is there
    wait(browser).until(EC.text_to_be_present_in_element((By.ID, "history"), "已完成"))
    screenshot(browser, "workbench-team.png", tmp_path)


def test_audit_findings_have_their_own_colour_and_the_reason_on_hover(server, browser, tmp_path):
    """The page against the audit contract (pipeline/audit.py to_dict): findings marked apart from copied spans."""
    browser.get(server)
    remedy = "今后要进一步加强理论学习。"
    text = "（一）理论学习的自觉性不强。" + remedy + COPIED
    copied_at, remedy_at = text.index(COPIED), text.index(remedy)
    inside = COPIED[:12]  # a finding inside the copied sentence, with offsets that do not match (found by its text)
    result = {
        "passed": False,
        "copy": {"ratio": 0.5, "problems": [], "copied": [{"sentence": COPIED, "start": copied_at, "end": len(text),
                 "source_id": "seed-2021-dangshi/03", "source_text": COPIED, "runs": [], "longest": 50, "containment": 1.0}]},
        "structure": {"passed": True, "problems": []},
        "audit": {"passed": False, "counts": {"remedy": 1, "echo": 1},
                  "sections": [{"number": 1, "heading": "理论学习的自觉性不强", "findings": [
                      {"kind": "remedy", "text": remedy, "start": remedy_at, "end": remedy_at + len(remedy),
                       "reason": "这是整改措施，原因剖析里应写为什么。"},
                      {"kind": "echo", "text": inside, "start": 0, "end": 3, "reason": "提示词的原话。"}]}]},
    }
    browser.execute_script("renderCheck(arguments[0], arguments[1]);", text, result)
    marks = browser.find_elements(By.CSS_SELECTOR, "#checked mark.audit")
    assert [m.text for m in marks] == [remedy, inside]
    assert "写成了整改措施" in marks[0].get_attribute("title") and "应写为什么" in marks[0].get_attribute("title")
    copied = browser.find_element(By.CSS_SELECTOR, "#checked mark.copied")
    assert copied.text == COPIED and copied.find_element(By.CSS_SELECTOR, "mark.audit").text == inside
    colour = lambda e: e.value_of_css_property("background-color")
    assert len({colour(marks[0]), colour(copied), colour(marks[1])}) == 3
    summary = browser.find_element(By.ID, "check-summary").text
    assert "审读：未通过，发现 2 处问题" in summary and "第 1 条：这是整改措施" in summary
    assert browser.find_element(By.ID, "checked").text == text
    screenshot(browser, "workbench-audit.png", tmp_path)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
