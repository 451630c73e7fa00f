// The dashboard in a real browser (headless Chromium driven by playwright-core), against the relay
// under `wrangler dev` on 127.0.0.1 with a local origin (test/browser/harness.mjs). Run it with
// `npm run test:browser` (test/browser/run.mjs: hard timeout, cleanup backstop, summary line).
// The steps run in order; a step whose prerequisite failed is skipped, naming it.
// Selectors are the pages' data-testid attributes (the page contract in docs/dashboard.md).
import assert from "node:assert/strict";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { onStop, relaySettings, root, sendCallback, signedCallback, startOrigin, startRelay, stopAll, waitFor } from "./harness.mjs";

const SHOTS = `${root}test-results/browser`;
const DOCS_SHOT = `${root}docs/img/dashboard.png`;
/** Share of pixels that must differ before docs/img/dashboard.png is replaced (times and ids change every run). */
const DOCS_SHOT_CHANGE = 0.02;
const DESKTOP = { viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1, colorScheme: /** @type {const} */ ("light") };
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, colorScheme: /** @type {const} */ ("light") };
const WAIT_MS = 15_000;

/** @type {Awaited<ReturnType<typeof startOrigin>>} */
let origin;
/** @type {Record<string, string>} */
let settings;
/** @type {Awaited<ReturnType<typeof startRelay>>} */
let relay;
/** @type {import("playwright-core").Browser} */
let browser;
/** @type {import("playwright-core").BrowserContext} */
let desktop;
/** @type {import("playwright-core").Page} */
let page;
/** The callback watched arriving in the live tail, and the one that becomes a dead letter. */
let live;
let dead;
/** The live page of two providers' conversations, once it showed both arriving. */
let livePagePath;
/** The replay job's page, once the dashboard has started one. */
let replayPath;
/** Names of the cookies that signing in set. */
let sessionCookies = [];

/** Console errors, page errors, 5xx answers and requests that leave 127.0.0.1, on every page. */
const problems = [];
/**
 * Console errors the scenario causes on purpose, accepted only on the page and while expected:
 * Chromium logs "Failed to load resource" for a page answered 4xx, such as a refused sign-in (401).
 * @type {{ path: string, text: RegExp }[]}
 */
const expectedErrors = [];
const failedSteps = new Set();

/** A CSS attribute-selector value (ids hold characters such as # and :). */
const css = (value) => JSON.stringify(value);
const conversationPath = (key) => `/dashboard/conversations/${encodeURIComponent(key)}`;
const livePath = (keys) => `/dashboard/live?${keys.map((key) => `conversation=${encodeURIComponent(key)}`).join("&")}`;

/** A step of the scenario; skipped when a step it needs failed. */
function step(name, needs, fn) {
  test(name, async (t) => {
    const missing = needs.filter((need) => failedSteps.has(need));
    if (missing.length > 0) {
      failedSteps.add(name);
      t.skip(`needs: ${missing.join("; ")}`);
      return;
    }
    try {
      await fn(t);
    } catch (error) {
      failedSteps.add(name);
      throw error;
    }
  });
}

const isLocal = (url) => ["about:", "data:", "blob:"].includes(url.protocol) || url.hostname === "127.0.0.1";

/** A browser context whose every page is watched for problems. */
async function newContext(label, options) {
  const context = await browser.newContext({ baseURL: relay.url, locale: "en-US", timezoneId: "UTC", ...options });
  context.setDefaultTimeout(WAIT_MS);
  context.setDefaultNavigationTimeout(20_000);
  context.on("console", (message) => {
    if (message.type() !== "error") return;
    const path = message.page() ? new URL(message.page().url()).pathname : "";
    if (expectedErrors.some((expected) => expected.path === path && expected.text.test(message.text()))) return;
    const where = message.location();
    problems.push(`${label}: console error on ${message.page()?.url() ?? "?"}: ${message.text()}${where.url ? ` (${where.url}:${where.lineNumber})` : ""}`);
  });
  context.on("weberror", (webError) => problems.push(`${label}: uncaught error on ${webError.page()?.url() ?? "?"}: ${webError.error().message}`));
  context.on("response", (response) => {
    if (response.status() >= 500) problems.push(`${label}: ${response.status()} from ${response.request().method()} ${response.url()}`);
  });
  // Nothing may leave 127.0.0.1 (fonts, scripts, analytics): such requests are refused and reported.
  await context.route(
    (url) => !isLocal(url),
    (route) => {
      problems.push(`${label}: a request left 127.0.0.1: ${route.request().url()}`);
      return route.abort("blockedbyclient");
    },
  );
  // A confirm() before a replay or a sign-out is accepted, as a user would.
  context.on("dialog", (dialog) => dialog.accept());
  return context;
}

async function shot(target, name, { fullPage = true } = {}) {
  const path = `${SHOTS}/${name}.png`;
  await target.screenshot({ path, fullPage, animations: "disabled", caret: "hide" });
  return path;
}

/** Waits until `locator`'s text, trimmed and in lower case, is `expected`; `reload` reloads the page between looks. */
async function waitForText(locator, expected, what, { timeoutMs = WAIT_MS, reload } = {}) {
  let seen;
  await waitFor(
    `${what} to read "${expected}"`,
    async () => {
      if ((await locator.count()) === 0) {
        seen = "(no such element)";
        if (reload) await reload();
        return false;
      }
      seen = ((await locator.first().textContent()) ?? "").trim();
      if (seen.toLowerCase() === expected) return true;
      if (reload) await reload();
      return false;
    },
    { timeoutMs, intervalMs: reload ? 1000 : 150 },
  ).catch((error) => {
    throw new Error(`${error.message}; it read "${seen}"`);
  });
}

/** Goes to `path` and checks the answer was a 2xx (after redirects). */
async function open(target, path) {
  const response = await target.goto(path);
  assert.ok(response, `no answer to GET ${path}`);
  assert.ok(response.ok(), `GET ${path} answered ${response.status()} (at ${target.url()})`);
  const landed = new URL(target.url()).pathname;
  if (landed === "/dashboard/login" && !path.startsWith("/dashboard/login")) throw new Error(`GET ${path} led to the login page: the session was lost`);
  return response;
}

/** Whether a list row is the row of conversation `key` (by its data attribute, a link to its page, or its text). */
async function rowIsFor(row, key) {
  if ((await row.getAttribute("data-conversation")) === key) return true;
  if ((await row.locator(`a[href$=${css(conversationPath(key))}]`).count()) > 0) return true;
  return ((await row.textContent()) ?? "").includes(key);
}

/** The body overflows the viewport sideways (a phone layout that does not fit). */
const overflow = (target) =>
  target.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    fits: document.documentElement.scrollWidth <= window.innerWidth + 1,
  }));

/** Elements wider than their box that scroll sideways (a wide table in a scrolling wrapper): fine, but worth knowing. */
const scrollsSideways = (target) =>
  target.evaluate(() =>
    [...document.querySelectorAll("body *")]
      .filter((element) => element.scrollWidth > element.clientWidth + 1 && ["auto", "scroll"].includes(getComputedStyle(element).overflowX))
      .map((element) => {
        const testid = element.getAttribute("data-testid") ?? element.closest("[data-testid]")?.getAttribute("data-testid");
        return `${element.tagName.toLowerCase()}${element.className ? `.${String(element.className).split(" ")[0]}` : ""}${testid ? ` (in ${testid})` : ""} ${element.scrollWidth}px in ${element.clientWidth}px`;
      }),
  );

/** Share of pixels that differ between two PNG files (1 when their sizes differ), measured in the browser. */
async function pixelChange(fileA, fileB) {
  const context = await browser.newContext();
  try {
    const scratch = await context.newPage();
    const [a, b] = [fileA, fileB].map((file) => `data:image/png;base64,${readFileSync(file).toString("base64")}`);
    return await scratch.evaluate(
      async ([a, b]) => {
        const load = (src) =>
          new Promise((resolve, reject) => {
            const image = new Image();
            image.onload = () => resolve(image);
            image.onerror = () => reject(new Error("not a PNG"));
            image.src = src;
          });
        const [imageA, imageB] = await Promise.all([load(a), load(b)]);
        if (imageA.width !== imageB.width || imageA.height !== imageB.height) return 1;
        const pixels = (image) => {
          const canvas = new OffscreenCanvas(image.width, image.height);
          const context2d = canvas.getContext("2d");
          context2d.drawImage(image, 0, 0);
          return context2d.getImageData(0, 0, image.width, image.height).data;
        };
        const [dataA, dataB] = [pixels(imageA), pixels(imageB)];
        let changed = 0;
        for (let i = 0; i < dataA.length; i += 4) {
          if (Math.abs(dataA[i] - dataB[i]) + Math.abs(dataA[i + 1] - dataB[i + 1]) + Math.abs(dataA[i + 2] - dataB[i + 2]) > 24) changed++;
        }
        return changed / (dataA.length / 4);
      },
      [a, b],
    );
  } finally {
    await context.close();
  }
}

// ---------------------------------------------------------------------------------------------

before(async () => {
  rmSync(SHOTS, { recursive: true, force: true });
  mkdirSync(SHOTS, { recursive: true });
  settings = relaySettings();
  origin = await startOrigin(settings.FORWARD_SECRET.split(",")[0].trim());
  settings.ORIGIN_URL = origin.url;
  // Chromium starts while wrangler does.
  const launching = chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-dev-shm-usage"],
    headless: true,
    // The harness stops the browser with everything else; playwright still kills it on exit.
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
    timeout: 60_000,
  });
  // Whatever happens next, the browser is closed with everything else.
  launching.then((launched) => onStop(() => launched.close())).catch(() => undefined);
  relay = await startRelay(settings);
  browser = await launching;
  console.log(`# relay ${relay.url} ready in ${(relay.startedInMs / 1000).toFixed(1)} s; origin ${origin.url}; Chromium ${browser.version()}`);
});

after(async () => {
  await stopAll();
});

const SIGN_IN = "sign in: a wrong token is refused, the admin token opens the overview with a strict session cookie";
step(SIGN_IN, [], async () => {
  desktop = await newContext("desktop", DESKTOP);
  page = await desktop.newPage();
  await open(page, "/dashboard/login");
  await page.locator("[data-testid=token]").waitFor();
  await shot(page, "login-desktop");

  const cookieNames = async () => (await desktop.cookies()).map((cookie) => `${cookie.name}=${cookie.value}`).sort();
  const anonymous = await cookieNames();
  const refusal = { path: "/dashboard/login", text: /^Failed to load resource: the server responded with a status of 401 / };
  expectedErrors.push(refusal);
  await page.locator("[data-testid=token]").fill("not-the-admin-token-at-all");
  await page.locator("[data-testid=sign-in]").click();
  await page.locator("[data-testid=login-error]").waitFor({ state: "visible" });
  await shot(page, "login-error-desktop");
  assert.deepEqual(await cookieNames(), anonymous, "a refused sign-in changed the cookies");

  await page.locator("[data-testid=token]").fill(settings.ADMIN_TOKEN);
  await page.locator("[data-testid=sign-in]").click();
  await page.waitForURL((url) => url.pathname === "/dashboard" || url.pathname === "/dashboard/");
  await page.locator("[data-testid=overview]").waitFor();
  expectedErrors.splice(expectedErrors.indexOf(refusal), 1);

  const cookies = await desktop.cookies();
  sessionCookies = cookies.filter((cookie) => !anonymous.includes(`${cookie.name}=${cookie.value}`)).map((cookie) => cookie.name);
  assert.ok(sessionCookies.length > 0, "no cookie was set by signing in");
  for (const cookie of cookies) {
    assert.deepEqual(
      { httpOnly: cookie.httpOnly, secure: cookie.secure, sameSite: cookie.sameSite },
      { httpOnly: true, secure: true, sameSite: "Strict" },
      `cookie ${cookie.name} (path ${cookie.path}) must be HttpOnly, Secure and SameSite=Strict`,
    );
  }
  await shot(page, "overview-empty-desktop");
});

const LIVE_TAIL = "live tail: a callback sent while watching appears, then its delivery";
step(LIVE_TAIL, [SIGN_IN], async () => {
  live = await signedCallback(settings, "easemob read_ack (one-to-one)");
  await open(page, `${conversationPath(live.conversation)}?watch=1`);
  await waitForText(page.locator("[data-testid=live-status]"), "live", "the live tail's status [data-testid=live-status]");
  assert.equal(await page.locator("[data-testid=live-event][data-event-type=receipt]").count(), 0, "the live tail shows a receipt before any was sent");

  origin.answer({ status: 200 });
  await sendCallback(relay.url, live);
  const receiptEvent = page.locator(`[data-testid=live-event][data-event-type=receipt][data-receipt-id=${css(live.receiptId)}]`);
  await receiptEvent.waitFor().catch(() => {
    throw new Error(`no [data-testid=live-event][data-event-type=receipt][data-receipt-id="${live.receiptId}"] appeared within ${WAIT_MS / 1000} s`);
  });
  const deliveryEvents = page.locator("[data-testid=live-event][data-event-type=delivery]");
  const deliveryEvent = page.locator(`[data-testid=live-event][data-event-type=delivery][data-receipt-id=${css(live.receiptId)}]`);
  await deliveryEvent
    .first()
    .waitFor()
    .catch(async () => {
      const named = await deliveryEvents.evaluateAll((events) => events.map((event) => event.getAttribute("data-receipt-id")));
      throw new Error(
        `no [data-testid=live-event][data-event-type=delivery][data-receipt-id="${live.receiptId}"] appeared within ${WAIT_MS / 1000} s of the receipt; delivery events seen name ${JSON.stringify(named)}`,
      );
    });
  const outcome = await deliveryEvent.first().getAttribute("data-outcome");
  assert.ok(outcome === null || outcome === "delivered", `the delivery event's data-outcome is "${outcome}", not "delivered"`);
  const delivered = origin.deliveriesOf(live.receiptId);
  assert.ok(
    delivered.some((attempt) => attempt.status === 200),
    `the origin should have accepted ${live.receiptId}; it saw ${JSON.stringify(delivered)}`,
  );
  await shot(page, "conversation-live-desktop");
});

const DEAD_LETTER = "dead letter: a refused delivery is listed, replayed from the dashboard and delivered";
step(DEAD_LETTER, [SIGN_IN], async () => {
  origin.answer({ status: 400 });
  dead = await signedCallback(settings, "tencent C2C.CallbackAfterMsgReport");
  assert.notEqual(dead.conversation, live?.conversation, "the dead letter needs a conversation of its own");
  await sendCallback(relay.url, dead);
  await waitFor(`the origin to refuse ${dead.receiptId} (answer 400)`, () => origin.deliveriesOf(dead.receiptId).some((attempt) => attempt.status === 400));

  const rows = page.locator("[data-testid=dead-letter-row]");
  // The list is the index, which follows the conversation within the snapshot interval (1 s).
  await waitFor(
    "a [data-testid=dead-letter-row] on /dashboard/dead-letters",
    async () => {
      await open(page, "/dashboard/dead-letters");
      for (const row of await rows.all()) if (await rowIsFor(row, dead.conversation)) return true;
      return false;
    },
    { timeoutMs: WAIT_MS, intervalMs: 1000 },
  ).catch(async (error) => {
    const texts = await rows.allTextContents().catch(() => []);
    throw new Error(`${error.message} for conversation ${dead.conversation}; rows seen: ${JSON.stringify(texts.map((text) => text.trim().slice(0, 120)))}`);
  });
  await shot(page, "dead-letters-desktop");

  origin.answer({ status: 200 });
  await page.locator("form[data-testid=replay-all] button").click();
  await page
    .waitForURL((url) => /^\/dashboard\/replays\/[^/]+$/.test(url.pathname))
    .catch(() => {
      throw new Error(`replaying did not land on /dashboard/replays/<id>; the page is ${page.url()}`);
    });
  replayPath = new URL(page.url()).pathname;
  await waitForText(page.locator("[data-testid=replay-state]"), "done", `the replay's state on ${replayPath}`, {
    timeoutMs: 30_000,
    // The page may follow the job by itself; if it does not, it is reloaded between looks.
    reload: async () => {
      await page.reload();
    },
  });
  await shot(page, "replay-desktop");

  await waitFor(`the origin to accept ${dead.receiptId} once replayed`, () => origin.deliveriesOf(dead.receiptId).some((attempt) => attempt.status === 200));
  const attempts = origin.deliveriesOf(dead.receiptId);
  const refused = attempts.filter((attempt) => attempt.status === 400);
  const accepted = attempts.filter((attempt) => attempt.status === 200);
  assert.equal(refused.length, 1, `one refused delivery of ${dead.receiptId} expected: ${JSON.stringify(attempts)}`);
  assert.equal(accepted.length, 1, `one accepted delivery of ${dead.receiptId} expected: ${JSON.stringify(attempts)}`);
  assert.equal(accepted[0].id, refused[0].id, "the replay must resend under the same webhook-id, so that the origin can dedupe");
  assert.ok(
    attempts.every((attempt) => attempt.verified),
    "every delivery must carry a valid signature",
  );

  await open(page, conversationPath(dead.conversation));
  const ofReceipt = page.locator(`[data-receipt-id=${css(dead.receiptId)}] [data-testid=delivery-status]`);
  const status = (await ofReceipt.count()) > 0 ? ofReceipt : page.locator("[data-testid=delivery-status]");
  await waitForText(status, "delivered", `[data-testid=delivery-status] of receipt ${dead.receiptId} on its conversation page`, {
    reload: async () => {
      await page.reload();
    },
  });
  assert.ok((await ofReceipt.count()) > 0, `the receipt's row should carry data-receipt-id="${dead.receiptId}" around its [data-testid=delivery-status]`);
  await shot(page, "conversation-desktop");
});

const LISTS = "conversations: the list shows both conversations and filters by provider";
step(LISTS, [SIGN_IN, LIVE_TAIL, DEAD_LETTER], async () => {
  const rows = page.locator("table[data-testid=conversations] [data-testid=conversation-row]");
  await waitFor(
    `rows for ${live.conversation} and ${dead.conversation} in table[data-testid=conversations] on /dashboard/conversations`,
    async () => {
      await open(page, "/dashboard/conversations");
      const found = { live: false, dead: false };
      for (const row of await rows.all()) {
        found.live ||= await rowIsFor(row, live.conversation);
        found.dead ||= await rowIsFor(row, dead.conversation);
      }
      return found.live && found.dead;
    },
    { timeoutMs: WAIT_MS, intervalMs: 1000 },
  );
  await shot(page, "conversations-desktop");

  // The list's own filter form when it has one (as a user filters), else the query it would send.
  const providerSelect = page.locator("form select[name=provider]");
  if ((await providerSelect.count()) === 1) {
    await providerSelect.selectOption("easemob");
    await providerSelect.locator("xpath=ancestor::form").locator("[type=submit]").first().click();
    await page.waitForURL((url) => url.pathname === "/dashboard/conversations" && url.searchParams.get("provider") === "easemob");
  } else await open(page, "/dashboard/conversations?provider=easemob");
  await page.locator("table[data-testid=conversations]").waitFor();
  const filtered = await rows.all();
  assert.ok(filtered.length >= 1, "?provider=easemob lists no conversation");
  for (const row of filtered) assert.equal(await rowIsFor(row, dead.conversation), false, "?provider=easemob still lists the tencent conversation");
  assert.ok(
    (await Promise.all(filtered.map((row) => rowIsFor(row, live.conversation)))).includes(true),
    "?provider=easemob does not list the easemob conversation",
  );
  await shot(page, "conversations-easemob-desktop");
});

const LIVE_PAGE = "live page: two providers' conversations in one feed, each receipt and its delivery as it happens";
step(LIVE_PAGE, [SIGN_IN], async () => {
  const watched = [await signedCallback(settings, "stream message.read"), await signedCallback(settings, "sendbird group_channel:message_read")];
  assert.notEqual(watched[0].conversation, watched[1].conversation, "the live page needs two conversations");
  const path = livePath(watched.map((callback) => callback.conversation));
  await open(page, path);
  const statusOf = (callback) => page.locator(`[data-testid=live-status][data-conversation=${css(callback.conversation)}]`);
  for (const callback of watched) await waitForText(statusOf(callback), "live", `the live page's status of ${callback.conversation}`);
  assert.equal(await page.locator("[data-testid=live-event]").count(), 0, "the live page shows an event before any was sent");

  origin.answer({ status: 200 });
  for (const callback of watched) await sendCallback(relay.url, callback);
  const eventOf = (callback, type) =>
    page.locator(
      `[data-testid=live-event][data-event-type=${type}][data-conversation=${css(callback.conversation)}][data-receipt-id=${css(callback.receiptId)}]`,
    );
  for (const callback of watched) {
    for (const type of ["receipt", "delivery"]) {
      await eventOf(callback, type)
        .first()
        .waitFor()
        .catch(async () => {
          const seen = await page
            .locator("[data-testid=live-event]")
            .evaluateAll((events) =>
              events.map(
                (event) => `${event.getAttribute("data-event-type")} ${event.getAttribute("data-conversation")} ${event.getAttribute("data-receipt-id")}`,
              ),
            );
          throw new Error(
            `no ${type} event of ${callback.receiptId} in ${callback.conversation} appeared within ${WAIT_MS / 1000} s; events seen: ${JSON.stringify(seen)}`,
          );
        });
    }
    const delivery = eventOf(callback, "delivery").first();
    assert.equal(await delivery.getAttribute("data-outcome"), "delivered", `the delivery of ${callback.receiptId} is not "delivered"`);
    assert.equal(await delivery.getAttribute("data-provider"), callback.sample.provider, `the delivery of ${callback.receiptId} names another provider`);
    const detail = (await delivery.textContent()) ?? "";
    assert.match(detail, /status 200/, `the delivery of ${callback.receiptId} does not show the origin's status: ${detail}`);
    assert.match(detail, /\d+(\.\d+)? (ms|s)\b/, `the delivery of ${callback.receiptId} does not show how long it took: ${detail}`);
    assert.equal(
      await delivery.locator(`a[href=${css(conversationPath(callback.conversation))}]`).count(),
      1,
      `the delivery of ${callback.receiptId} does not link to its conversation`,
    );
    // Newest first: the delivery came after its receipt, so it is listed above it.
    const order = await page
      .locator("[data-testid=live-event]")
      .evaluateAll(
        (events, id) => events.filter((event) => event.getAttribute("data-receipt-id") === id).map((event) => event.getAttribute("data-event-type")),
        callback.receiptId,
      );
    assert.deepEqual(order.slice(-2), ["delivery", "receipt"], `the feed is not newest first for ${callback.receiptId}: ${JSON.stringify(order)}`);
    assert.ok(
      origin.deliveriesOf(callback.receiptId).some((attempt) => attempt.status === 200),
      `the origin should have accepted ${callback.receiptId}`,
    );
  }
  livePagePath = path;
  await shot(page, "live-desktop");
});

const OVERVIEW_SHOT = "overview: a screenshot for the README (docs/img/dashboard.png when it changed)";
step(OVERVIEW_SHOT, [SIGN_IN], async () => {
  await open(page, "/dashboard");
  await page.locator("[data-testid=overview]").waitFor();
  await shot(page, "overview-desktop-full");
  const path = await shot(page, "overview-desktop", { fullPage: false });
  const change = existsSync(DOCS_SHOT) ? await pixelChange(path, DOCS_SHOT) : 1;
  if (change > DOCS_SHOT_CHANGE) {
    mkdirSync(`${root}docs/img`, { recursive: true });
    copyFileSync(path, DOCS_SHOT);
    console.log(`# docs/img/dashboard.png updated (${(change * 100).toFixed(1)} % of pixels changed)`);
  } else console.log(`# docs/img/dashboard.png kept (${(change * 100).toFixed(2)} % of pixels differ: times and ids)`);
});

const PHONE_STEP = "phone: sign-in, overview, conversation and live pages fit a 390 px wide screen, sign-out visible";
step(PHONE_STEP, [SIGN_IN], async () => {
  const phone = await newContext("phone", PHONE);
  try {
    const small = await phone.newPage();
    await open(small, "/dashboard/login");
    await shot(small, "login-phone");
    const fitsLogin = await overflow(small);
    assert.ok(fitsLogin.fits, `the login page overflows a phone: scrollWidth ${fitsLogin.scrollWidth} > ${fitsLogin.innerWidth}`);
    await small.locator("[data-testid=token]").fill(settings.ADMIN_TOKEN);
    await small.locator("[data-testid=sign-in]").click();
    await small.waitForURL((url) => url.pathname === "/dashboard" || url.pathname === "/dashboard/");
    await small.locator("[data-testid=overview]").waitFor();

    const pages = [
      ["overview-phone", "/dashboard"],
      ...(live ? [["conversation-live-phone", `${conversationPath(live.conversation)}?watch=1`]] : []),
      ...(dead ? [["conversation-phone", conversationPath(dead.conversation)]] : []),
      ["conversations-phone", "/dashboard/conversations"],
      ["dead-letters-phone", "/dashboard/dead-letters"],
      ...(replayPath ? [["replay-phone", replayPath]] : []),
      ...(livePagePath ? [["live-phone", livePagePath]] : []),
    ];
    const misfits = [];
    for (const [name, path] of pages) {
      await open(small, path);
      if (path.includes("watch=1")) await waitForText(small.locator("[data-testid=live-status]"), "live", `the live tail's status on a phone`);
      if (path === livePagePath) {
        for (const status of await small.locator("[data-testid=live-status]").all()) await waitForText(status, "live", `a live page's status on a phone`);
        // A fresh receipt, so that the feed the phone has to fit holds events.
        const more = await signedCallback(settings, "stream message.read");
        await sendCallback(relay.url, more);
        await small.locator(`[data-testid=live-event][data-event-type=delivery][data-receipt-id=${css(more.receiptId)}]`).waitFor();
      }
      await shot(small, name);
      const fit = await overflow(small);
      if (!fit.fits) misfits.push(`${path} (scrollWidth ${fit.scrollWidth} > ${fit.innerWidth})`);
      const sideways = await scrollsSideways(small);
      if (sideways.length > 0) console.log(`# phone ${path}: scrolls sideways inside ${sideways.join(", ")}`);
      const signOut = small.locator("[data-testid=sign-out]");
      if (!(await signOut.isVisible())) misfits.push(`${path}: [data-testid=sign-out] not visible`);
    }
    assert.deepEqual(misfits, [], `pages that do not fit a 390×844 phone: ${misfits.join("; ")}`);
  } finally {
    await phone.close();
  }
});

const SIGN_OUT = "sign out: the session ends and /dashboard leads to the login page";
step(SIGN_OUT, [SIGN_IN], async () => {
  await open(page, "/dashboard");
  await page.locator("[data-testid=sign-out]").click();
  await page
    .waitForURL((url) => url.pathname === "/dashboard/login")
    .catch(() => {
      throw new Error(`signing out did not land on /dashboard/login; the page is ${page.url()}`);
    });
  const response = await page.goto("/dashboard");
  assert.equal(new URL(page.url()).pathname, "/dashboard/login", `after signing out, /dashboard answered ${response?.status()} at ${page.url()}`);
  await page.locator("[data-testid=token]").waitFor();
  const left = (await desktop.cookies()).filter((cookie) => sessionCookies.includes(cookie.name)).map((cookie) => cookie.name);
  assert.deepEqual(left, [], "the session cookie is still there after signing out");
});

test("no console errors, uncaught errors, 5xx answers or requests off 127.0.0.1 on any page", () => {
  assert.deepEqual(problems, [], `${problems.length} problems:\n  ${problems.join("\n  ")}`);
});
