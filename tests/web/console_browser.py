"""Drives the bastion's web console in headless Chromium (Debian's, via Playwright), the way
an auditor would: sign in through the one-time URL, list sessions, open one and play it,
search, and watch and end a live session. Called by tests/tests/web_console.rs with one JSON
argument; prints one JSON object of findings on the last line of stdout.

Steps are chosen by the argument's keys; each waits on a condition with a deadline."""

import json
import sys

from playwright.sync_api import sync_playwright

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20000


def say(line):
    print(line, flush=True)


def main():
    spec = json.loads(sys.argv[1])
    found = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("dialog", lambda d: (found.setdefault("dialogs", []).append(d.message), d.dismiss()))

        page.goto(spec["signin"])
        found["after_signin"] = page.url
        cookies = context.cookies()
        found["cookie"] = [
            {k: c[k] for k in ("name", "httpOnly", "secure", "sameSite")} for c in cookies
        ]

        if "session" in spec:
            sid = spec["session"]
            page.wait_for_selector("#sessions")
            found["listed"] = page.locator(f"#sessions a[href='/sessions/{sid}']").count()
            page.screenshot(path=spec["shots"] + "/web-console-sessions.png", full_page=True)
            page.click(f"#sessions a[href='/sessions/{sid}']")
            page.wait_for_selector("#player .ap-term, #player .ap-terminal, #player pre", state="attached")
            want = spec["expect"]
            page.wait_for_function(
                "want => document.querySelector('#player').innerText.includes(want)", arg=want
            )
            found["played"] = True
            found["integrity"] = page.inner_text("#integrity")
            found["show_html"] = page.inner_html("#show")
            found["scripts_run"] = page.evaluate("window.__pwned === true")
            page.screenshot(path=spec["shots"] + "/web-console-player.png", full_page=True)

        if "search" in spec:
            page.goto(spec["base"] + "/search")
            page.fill("#q", spec["search"])
            page.press("#q", "Enter")
            page.wait_for_selector("#hits a.hit")
            found["hits"] = page.locator("#hits a.hit").count()
            href = page.locator("#hits a.hit").first.get_attribute("href")
            found["hit_href"] = href
            page.locator("#hits a.hit").first.click()
            page.wait_for_function(
                "want => document.querySelector('#player') && document.querySelector('#player').innerText.includes(want)",
                arg=spec["search"],
            )
            found["jumped_to"] = page.evaluate("document.querySelector('#player').dataset.started")
            found["hash"] = page.evaluate("window.location.hash")

        if "live" in spec:
            page.goto(spec["base"] + "/sessions/" + spec["live"])
            page.wait_for_selector("#live")
            page.wait_for_timeout(500)  # the WebSocket opens after the page loads
            say("WATCHING")
            sys.stdin.readline()  # the test typed into the session
            page.wait_for_function(
                "want => document.querySelector('#live').textContent.includes(want)",
                arg=spec["live_expect"],
            )
            found["live_seen"] = True
            page.screenshot(path=spec["shots"] + "/web-console-live.png", full_page=True)
            page.fill("#end-reason", spec["reason"])
            page.check("#end-confirm")
            page.click("#end-button")
            page.wait_for_load_state()
            found["after_end"] = page.url
            found["after_end_text"] = page.inner_text("main")

        found["console_errors"] = errors
        browser.close()
    say(json.dumps(found))


if __name__ == "__main__":
    main()
