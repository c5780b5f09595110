// Reads the rendered docs as a reader would, in Debian's chromium: opens the v1 index, follows
// a sidebar link, switches version, follows a table-of-contents anchor, and takes a
// screenshot. Prints one JSON line of what it saw; the Rust test (tests/docs_browser.rs)
// asserts on it. Usage: node docs.mjs BASE_URL SCREENSHOT_PATH
import { chromium } from "playwright-core";

const [base, screenshot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // The machine has no network: without these Chromium keeps trying to reach Google's hosts.
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
// CSP violations reach the console as errors (Chromium reports them there, and the init
// script below adds the event's own report).
const seen = { console_errors: [], page_errors: [], failed_requests: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("console", (m) => m.type() === "error" && seen.console_errors.push(m.text()));
  page.on("pageerror", (e) => seen.page_errors.push(String(e)));
  page.on("response", (r) => r.status() >= 400 && seen.failed_requests.push(`${r.status()} ${r.url()}`));
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });

  await page.goto(`${base}/docs/v1/`);
  seen.index_title = await page.title();
  seen.sidebar = await page.locator("nav.sidebar a").allTextContents();

  // A sidebar link to another page.
  await page.locator("nav.sidebar a", { hasText: "API reference" }).first().click();
  await page.waitForLoadState();
  seen.after_sidebar = { url: new URL(page.url()).pathname, h1: await page.locator("main h1").first().textContent() };
  seen.current = await page.locator('nav.sidebar [aria-current="page"]').allTextContents();

  // A table-of-contents anchor further down: the hash changes and its heading is on screen.
  const toc = page.locator("aside.toc a").nth(3);
  seen.toc_entry = await toc.textContent();
  const href = await toc.getAttribute("href");
  await toc.click();
  seen.after_toc = { hash: new URL(page.url()).hash, href };
  seen.anchor_in_view = await page.evaluate((id) => {
    const el = document.getElementById(decodeURIComponent(id.slice(1)));
    if (!el) return "no element";
    const r = el.getBoundingClientRect();
    // Scrolled to the top edge, give or take a subpixel.
    return r.top > -1 && r.top < window.innerHeight ? true : `top ${r.top}, scrollY ${window.scrollY}, height ${window.innerHeight}`;
  }, href);

  // The version switcher: open it, pick v0.
  await page.locator("details.versions summary").click();
  await page.locator("details.versions a", { hasText: "v0" }).first().click();
  await page.waitForLoadState();
  seen.after_version = { url: new URL(page.url()).pathname, current: await page.locator("details.versions .current").textContent() };

  // The picture in the README: a page with all three navigation parts.
  await page.goto(`${base}/docs/v1/api`);
  await page.screenshot({ path: screenshot, fullPage: false });
} catch (e) {
  seen.failure = String(e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
