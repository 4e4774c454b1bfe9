// What the browser tests share: Debian's Chromium launched by Playwright (no browser download), a page per person
// in a context of its own whose page errors fail the run, and the TOTP code a signing-in staff member types.
import { createHmac } from "node:crypto";
import { chromium } from "playwright-core";

export const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
}

/** A page in a browser context of its own (its own sessionStorage, so its own signed-in person). Anything it
 * logs as an error (a refused CORS call, a CSP violation, an uncaught exception) is pushed onto `errors`. */
export async function newPerson(browser, who, errors, viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport });
  context.setDefaultTimeout(20000);
  const page = await context.newPage();
  page.on("pageerror", (e) => errors.push(`${who}: uncaught: ${e.message}`));
  page.on("console", (m) => { if (m.type() === "error") errors.push(`${who}: console: ${m.text()}`); });
  return page;
}

/** RFC 6238 code of the 30-second step `ahead` of the current one. */
export function totp(secret, ahead) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const bits = [...secret.replace(/=+$/, "").toUpperCase()].map((c) => alphabet.indexOf(c).toString(2).padStart(5, "0")).join("");
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30000) + ahead));
  const mac = createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 15;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1000000).padStart(6, "0");
}

/** The code of the next step: enrolling used the current one, which is spent. */
export const nextTotp = (secret) => totp(secret, 1);
