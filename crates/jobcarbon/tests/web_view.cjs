// The web view in headless Chromium, driven by Playwright (npm playwright-core, installed by
// scripts/install-tools.sh into .tools/node; NODE_PATH points there) with Debian's chromium.
//
//   node web_view.cjs URL SCREENSHOT.png
//
// Waits until the page's script has filled every section from the JSON API, saves a full-page
// screenshot, and prints what is on the page as one JSON line for the Rust test to assert.
"use strict";
const { chromium } = require("playwright-core");

async function main() {
  const [url, screenshot] = process.argv.slice(2);
  if (!url || !screenshot) throw new Error("usage: node web_view.cjs URL SCREENSHOT.png");
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    // Failed loads are reported by URL (the browser's own /favicon.ico probe is not the page's).
    page.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && errors.push(m.text()));
    page.on("response", (r) => r.status() >= 400 && !r.url().endsWith("/favicon.ico") && errors.push(`${r.status()} ${r.url()}`));
    await page.goto(url);
    const timeout = 30000;
    await page.waitForSelector("#totals .card b", { timeout });
    await page.waitForSelector("#workloads td", { timeout });
    await page.waitForSelector("#lineage-graph path.edge", { timeout, state: "attached" });
    await page.waitForSelector("#inference td", { timeout });
    await page.waitForSelector("#allocation td", { timeout });
    const cells = (selector) =>
      page.$$eval(selector, (rows) =>
        rows.map((r) => [...r.querySelectorAll("td")].map((td) => td.textContent.trim())).filter((r) => r.length));
    const facts = {
      title: await page.title(),
      cards: await page.$$eval("#totals .card", (cs) => cs.map((c) => c.textContent.trim())),
      workloads: await cells("#workloads tr"),
      pager: (await page.textContent("#pager")).trim(),
      products: await cells("#products tr"),
      edges: await page.$$eval("#lineage-graph path.edge", (ps) => ps.length),
      edgeLabels: await page.$$eval("#lineage-graph > text", (ts) => ts.map((t) => t.textContent)),
      lineageBoxes: await page.$$eval("#lineage-graph g.product text:first-of-type", (ts) => ts.map((t) => t.textContent)),
      inference: await cells("#inference tr"),
      inferenceHeader: await page.$$eval("#inference th", (ths) => ths.map((t) => t.textContent)),
      allocation: await cells("#allocation tr"),
      allocationError: (await page.textContent("#aerr")).trim(),
      chartBars: await page.$$eval("#achart rect", (rs) => rs.length),
      errors,
    };
    await page.screenshot({ path: screenshot, fullPage: true });
    process.stdout.write(JSON.stringify(facts) + "\n");
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stderr.write(`web_view.cjs: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
