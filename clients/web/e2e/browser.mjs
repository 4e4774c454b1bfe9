// The web app in Debian's Chromium, driven by Playwright (tests/e2e/web/test_web_browser.py starts the
// platform, seeds it and runs this). Every wait is Playwright's: for an element, a URL or a condition.
// Environment: WEB_URL, SCREENSHOTS (a directory), EMAIL and PASSWORD of the account to create, DOG and CAT
// (display names of two seeded pets: a dog with a photo near Tokyo, a cat in Osaka), MFA_EMAIL and MFA_SECRET
// (an account with the second factor on, its password PASSWORD), DEMO_EMAIL (whom to be at the demo provider),
// EXPIRED_SESSION (a stored session, as JSON, whose access token has expired).
import { createHmac } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const WEB_URL = env("WEB_URL");
const SCREENSHOTS = env("SCREENSHOTS");
const EMAIL = env("EMAIL");
const PASSWORD = env("PASSWORD");
const DOG = env("DOG");
const CAT = env("CAT");
const MFA_EMAIL = env("MFA_EMAIL");
const MFA_SECRET = env("MFA_SECRET");
const DEMO_EMAIL = env("DEMO_EMAIL");
const EXPIRED = JSON.parse(env("EXPIRED_SESSION")); // an expired access token with a good refresh token
mkdirSync(SCREENSHOTS, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
context.setDefaultTimeout(20000);
const page = await context.newPage();
// Anything the page logs as an error (a refused CORS call, a CSP violation, an uncaught exception) fails the run.
const pageErrors = [];
page.on("pageerror", (e) => pageErrors.push(`uncaught: ${e.message}`));
page.on("console", (m) => { if (m.type() === "error") pageErrors.push(`console: ${m.text()}`); });

/** RFC 6238 code of the next 30-second step: the one enrolling used the current step, which is spent. */
function nextTotp(secret) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const bits = [...secret.replace(/=+$/, "").toUpperCase()].map((c) => alphabet.indexOf(c).toString(2).padStart(5, "0")).join("");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30000) + 1));
  const mac = createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 15;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1000000).padStart(6, "0");
}

const shot = (name) => page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
const heading = (name) => page.getByRole("heading", { level: 1, name }).waitFor();
const step = (text) => console.log(`- ${text}`);

try {
  step("sign up: a password that is too short is named next to its field");
  await page.goto(`${WEB_URL}/signup`);
  await heading("Create your account");
  await page.getByLabel("Your name").fill("Browser Tester");
  await page.getByLabel("Email").fill(EMAIL);
  await page.getByLabel("Password", { exact: true }).fill("short");
  await page.getByRole("button", { name: "Create account" }).click();
  await page.locator("input[name=password][aria-invalid=true]").waitFor();
  const passwordError = await page.locator(".field.invalid .error-text").innerText();
  if (!/character/i.test(passwordError)) throw new Error(`password error reads: ${passwordError}`);
  await page.getByRole("alert").waitFor();
  await shot("signup-errors");

  step("sign up with a good password: signed in, on the pets");
  await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  await heading("Find a pet");
  await page.getByText(EMAIL).waitFor();

  step("sign out, a wrong password, then sign in");
  await page.getByRole("button", { name: "Sign out" }).click();
  await heading("Sign in");
  await page.getByLabel("Email").fill(EMAIL);
  await page.getByLabel("Password").fill("not the password at all");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: "do not match an account" }).waitFor();
  await shot("signin-error");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await heading("Find a pet");
  await page.getByText(EMAIL).waitFor();

  step("search: dogs within 25 km of Tokyo");
  await page.getByRole("link", { name: CAT }).waitFor(); // unfiltered, both seeded pets are listed
  await page.getByLabel("Species").selectOption({ label: "Dog" });
  await page.getByLabel("Near").selectOption({ label: "Tokyo" });
  await page.getByLabel("Within (km)").fill("25");
  await page.getByRole("button", { name: "Search" }).click();
  await page.waitForURL(/species=1.*near=tokyo/);
  const dogCard = page.getByRole("listitem").filter({ has: page.getByRole("link", { name: DOG }) });
  await dogCard.getByText(/km away/).waitFor();
  await page.getByRole("link", { name: CAT }).waitFor({ state: "detached" });
  await page.waitForFunction(() => [...document.querySelectorAll(".card img")].every((i) => i.complete && i.naturalWidth > 0));
  await shot("pets");

  step("a pet's page with its photo");
  await page.getByRole("link", { name: DOG }).click();
  await heading(DOG);
  const photo = page.getByRole("img", { name: `${DOG}, photo 1 of 1` });
  await photo.waitFor();
  await page.waitForFunction((img) => img.complete && img.naturalWidth > 0, await photo.elementHandle());
  await shot("pet");

  step("the pets on a phone-sized screen, back in history");
  await page.goBack();
  await heading("Find a pet");
  await page.setViewportSize({ width: 390, height: 844 });
  await dogCard.waitFor();
  await shot("pets-phone");

  step("sign in with the second factor: a wrong code, then the right one");
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.getByRole("button", { name: "Sign out" }).click();
  await heading("Sign in");
  await page.getByLabel("Email").fill(MFA_EMAIL);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await heading("Enter your code");
  await page.getByLabel("Code").fill("000000");
  await page.getByRole("button", { name: "Verify" }).click();
  await page.getByRole("alert").filter({ hasText: "code is not right" }).waitFor();
  await shot("mfa-error");
  await page.getByLabel("Code").fill(nextTotp(MFA_SECRET));
  await page.getByRole("button", { name: "Verify" }).click();
  await heading("Find a pet");
  await page.getByText(MFA_EMAIL).waitFor();

  step("sign in with the demo provider (authorization code with PKCE, through its page on the edge)");
  await page.getByRole("button", { name: "Sign out" }).click();
  await heading("Sign in");
  await page.getByRole("button", { name: "Continue with the demo provider" }).click();
  await page.getByRole("heading", { name: "Local OpenID provider" }).waitFor();
  await page.getByRole("textbox", { name: "Email" }).fill(DEMO_EMAIL);
  await page.getByRole("button", { name: "Sign in" }).click();
  await heading("Find a pet");
  await page.getByText(DEMO_EMAIL).waitFor();
  if (!page.url().endsWith("/")) throw new Error(`the code stayed in the address: ${page.url()}`);

  step("an expired access token is refreshed once, quietly");
  await page.evaluate((s) => sessionStorage.setItem("petplatform.session", s), JSON.stringify(EXPIRED));
  await page.goto(`${WEB_URL}/?species=1`);
  await page.getByRole("link", { name: DOG }).waitFor();
  await page.getByText(EXPIRED.email).waitFor();
  const stored = await page.evaluate(() => JSON.parse(sessionStorage.getItem("petplatform.session")));
  if (stored.accessToken === EXPIRED.accessToken || stored.refreshToken === EXPIRED.refreshToken) {
    throw new Error("the expired session was not refreshed");
  }

  if (pageErrors.length) throw new Error(`the page reported errors:\n${pageErrors.join("\n")}`);
  console.log("browser test passed");
} catch (error) {
  await shot("failure").catch(() => {});
  console.error(`browser test failed at ${page.url()}: ${error.stack ?? error}`);
  if (pageErrors.length) console.error(`page errors:\n${pageErrors.join("\n")}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
