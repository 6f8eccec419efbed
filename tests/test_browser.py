"""The workbench in headless Chromium (Debian's chromium + chromium-driver) driven by Selenium.

A real uvicorn server on a free loopback port serves the app built with a scripted chat model, so the
whole chain runs in seconds. Screenshots go to $POXI_SCREENSHOT_DIR (default: the test's tmp dir).
"""

import os
import socket
import threading
import time
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

from fakes import HashEmbedder, ScriptedChat  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.web import create_app  # noqa: E402

NOTE = """区数据局党支部2024年度组织生活会，主题是党纪学习教育。
查摆的问题：
1. 理论学习流于形式，全年集中学习10次，其中7次是读文件。
2. 联系服务群众不够经常，全年到窗口和社区调研仅4次。
3. 数据共享推进慢，2个部门的数据接口拖了半年。
4. 执行财经纪律不严，1笔差旅费报销手续不全。"""
NOTE_JSON = {"unit": "区数据局党支部", "meeting": "组织生活会", "year": "2024", "theme": "党纪学习教育", "problems": [
    {"title": "理论学习流于形式", "facts": ["全年集中学习10次，其中7次是读文件"]},
    {"title": "联系服务群众不够经常", "facts": ["全年到窗口和社区调研仅4次"]},
    {"title": "数据共享推进慢", "facts": ["2个部门的数据接口拖了半年"]},
    {"title": "执行财经纪律不严", "facts": ["1笔差旅费报销手续不全"]},
]}
COPIED = "对理论学习的紧迫性、重要性认识不够，思想上没有把理论学习作为“硬指标”“硬任务”，还没能做到自觉自愿持之以恒。"
BODIES = [
    "理论学习的自觉性不强。支部把学习当成完成规定动作，全年集中学习10次，其中7次是读文件，研讨交流少。" + COPIED,
    "群众观点树得不牢。党员习惯在办公室处理数据工单，全年到窗口和社区调研仅4次，对办事群众的难处了解不深。",
    "担当作为的劲头不足。面对跨部门协调的难题存在等靠思想，2个部门的数据接口拖了半年，没有主动上门推动解决。",
    "纪律规矩意识不够强。对财经纪律的严肃性认识不足，1笔差旅费报销手续不全，日常提醒和监督检查不够经常。",
]


def scripted_chat(gate: threading.Event | None = None) -> ScriptedChat:
    """Note and four sections in order (the plan needs no model); the fake model cannot rewrite, so the copied sentence survives.

    With `gate`, the second section waits for it: the run is then still going server-side.
    """
    main = iter([NOTE_JSON, BODIES[0], BODIES[1] if gate is None else (lambda: gate.wait(20) and BODIES[1]), *BODIES[2:]])

    def reply(messages):
        if "需要改写的句子" in messages[-1]["content"]:  # prompts/rewrite.yaml
            return messages[-1]["content"].rsplit("需要改写的句子：", 1)[1].strip()
        nxt = next(main)
        return nxt() if callable(nxt) else nxt

    return ScriptedChat([reply] * 20)


@pytest.fixture
def gate():
    return threading.Event()


@pytest.fixture
def gated():
    return False  # a test parametrizes this to True to hold the model on section 2


@pytest.fixture
def server(tmp_path, gate, gated):
    from functools import partial

    from pipeline.chain import draft

    config = load_config({"embedder": HashEmbedder.name, "cache": tmp_path / "cache"})
    app = create_app(config, chat_factory=lambda cfg: scripted_chat(gate if gated else None),
                     draft_fn=partial(draft, embedder=HashEmbedder()))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not srv.started:
        assert time.time() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    gate.set()
    srv.should_exit = True
    thread.join(10)


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


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
