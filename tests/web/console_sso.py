"""Signs in to the bastion's web console through the identity provider in headless Chromium
(Debian's, via Playwright), the way an auditor would: "Sign in with ..." on the sign-in page,
the provider's own login and consent pages, back to the console's session list. Then the
refusals a browser can produce: a person in no auditor group, a forged `state`, and a code
used twice. Called by tests/tests/web_console_sso.rs with one JSON argument; prints one JSON
object of findings on the last line of stdout. Every step waits on a condition with a
deadline."""

import json
import time
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


def new_page(browser):
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    return context, page


def sign_in(page, base, login):
    """Clicks "Sign in with", signs in and consents at the provider; returns the callback URL
    the provider sent the browser to."""
    seen = {}

    def watch(response):
        url = response.url
        if url.startswith(base + "/signin/sso/callback"):
            seen["callback"] = url

    page.on("response", watch)
    page.goto(base + "/signin")
    page.click("#signin-sso")
    page.wait_for_selector("input[name=login]")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any")
    page.click("button[type=submit]")
    # The consent page (the first sign-in of this person for this client).
    page.wait_for_selector("button[type=submit]")
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: url.startswith(base))
    return seen


def authorization_url(context, base):
    """Starts a sign-in but stops at the provider's door: the authorization URL (with the
    console's fresh state) the console sends the browser to. The request is the browser
    context's, so the pre-login cookie lands in its cookie jar."""
    response = context.request.get(base + "/signin/sso", max_redirects=0)
    return response.headers["location"], response.headers.get("set-cookie", "")


def main():
    spec = json.loads(sys.argv[1])
    base, idp = spec["base"], spec["idp"]
    found = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)

        # An auditor: lands on the sessions list.
        context, page = new_page(browser)
        seen = sign_in(page, base, spec["auditor"])
        page.wait_for_url(base + "/sessions**")
        page.wait_for_selector("#sessions")
        found["auditor_landed"] = page.url
        found["auditor_main"] = page.inner_text("body")
        found["cookies"] = [
            {k: c[k] for k in ("name", "httpOnly", "secure", "sameSite", "expires")}
            for c in context.cookies()
        ]
        found["signed_in_at"] = time.time()
        callback = seen.get("callback", "")
        found["callback"] = callback
        # The same callback again in the same browser: the pre-login is gone.
        page.goto(callback)
        found["replayed_callback"] = page.inner_text("body")
        context.close()

        # A used code under a fresh pre-login (right state, fresh verifier): the provider
        # refuses it at the token endpoint.
        context, page = new_page(browser)
        fresh, prelogin = authorization_url(context, base)
        found["authorize"] = fresh
        found["prelogin_cookie"] = prelogin
        state = [kv.split("=", 1)[1] for kv in fresh.split("?", 1)[1].split("&") if kv.startswith("state=")][0]
        code = [kv.split("=", 1)[1] for kv in callback.split("?", 1)[1].split("&") if kv.startswith("code=")][0]
        page.goto(f"{base}/signin/sso/callback?code={code}&state={state}")
        found["replayed_code"] = page.inner_text("body")
        context.close()

        # A forged state: refused before any code is traded.
        context, page = new_page(browser)
        authorization_url(context, base)
        page.goto(f"{base}/signin/sso/callback?code=whatever&state=forged")
        found["forged_state"] = page.inner_text("body")
        context.close()

        # A person in no auditor group: refused with the reason.
        context, page = new_page(browser)
        sign_in(page, base, spec["outsider"])
        page.wait_for_selector("main")
        found["outsider_url"] = page.url
        found["outsider"] = page.inner_text("body")
        found["outsider_cookies"] = [c["name"] for c in context.cookies() if c["name"] == "jitssh_web"]
        context.close()

        browser.close()
    print(json.dumps(found), flush=True)

if __name__ == "__main__":
    main()
