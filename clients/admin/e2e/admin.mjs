// The admin panel in Debian's Chromium, driven by Playwright (tests/e2e/web/test_admin_browser.py starts the
// platform, seeds a listing the fraud service scored, and runs this). A person reports the listing in the web app
// (the pet page's Report dialog, same server); a moderator signs in with password and TOTP, opens the case
// from the queue, reads its evidence and hides the listing with a reason; a support member sees no moderator
// action; an admin verifies the audit log. Every wait is Playwright's: for an element, a URL or a condition.
// Environment: ADMIN_URL (the panel, ending in /admin/), SCREENSHOTS, PASSWORD (every account's), MODERATOR_EMAIL
// and MODERATOR_SECRET, SUPPORT_EMAIL and SUPPORT_SECRET, ADMIN_EMAIL and ADMIN_SECRET (TOTP secrets, base32),
// WEB_URL (the web app, same server) and REPORTER_EMAIL (the person who reports),
// PET (the reported listing, pets/{id}) and PET_NAME (its display name), OWNER_NAME (its owner's display name), FACTOR (a fraud factor's words).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { env, launch, newPerson, nextTotp } from "@petplatform/kit/e2e/chromium";

const ADMIN_URL = env("ADMIN_URL");
const SCREENSHOTS = env("SCREENSHOTS");
const PASSWORD = env("PASSWORD");
const PET = env("PET");
const PET_NAME = env("PET_NAME");
const OWNER_NAME = env("OWNER_NAME");
const FACTOR = env("FACTOR");
mkdirSync(SCREENSHOTS, { recursive: true });

const browser = await launch();
const pageErrors = [];
const shot = (page, name) => page.screenshot({ path: join(SCREENSHOTS, `admin-${name}.png`), fullPage: true });
const heading = (page, name) => page.getByRole("heading", { level: 1, name }).waitFor();
const step = (text) => console.log(`- ${text}`);

/** Password, then the authenticator's code: the panel's only way in. */
async function signIn(page, email, secret) {
  await page.goto(ADMIN_URL);
  await heading(page, "Staff sign in");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await heading(page, "Enter your code");
  await page.getByLabel("Code").fill(nextTotp(secret));
  await page.getByRole("button", { name: "Verify" }).click();
  await page.getByText(email).waitFor();
}

try {
  step("a person signs in to the web app and reports the listing from its page");
  const person = await newPerson(browser, "reporter", pageErrors);
  const REPORTER_EMAIL = env("REPORTER_EMAIL");
  await person.goto(`${env("WEB_URL")}/signin`);
  await heading(person, "Sign in");
  await person.getByLabel("Email").fill(REPORTER_EMAIL);
  await person.getByLabel("Password").fill(PASSWORD);
  await person.getByRole("button", { name: "Sign in", exact: true }).click();
  await person.getByText(REPORTER_EMAIL).waitFor();
  await person.goto(`${env("WEB_URL")}/${PET}`);
  await heading(person, PET_NAME);
  await person.getByRole("button", { name: "Report" }).click();
  const dialog = person.getByRole("dialog", { name: "Report this listing" });
  await dialog.waitFor();
  // No reason yet: the select says what is wrong, keyboard focus stays in the dialog.
  await dialog.getByRole("button", { name: "Send report" }).click();
  await dialog.locator("select[aria-invalid=true]").waitFor();
  await dialog.getByRole("alert").waitFor();
  await dialog.getByLabel("Reason").selectOption({ label: "Scam or fake listing (e.g. pay outside the platform)" });
  if (await dialog.getByRole("alert").count()) throw new Error("the reason's error outlives the choice of a reason");
  await dialog.getByLabel("Details (optional)").fill("asks to pay by gift card before meeting");
  await person.screenshot({ path: join(SCREENSHOTS, "web-report.png") });
  await dialog.getByRole("button", { name: "Send report" }).click();
  await dialog.getByRole("status").filter({ hasText: "Thanks, our moderators will look at it." }).waitFor();
  await dialog.getByRole("button", { name: "Close" }).click();
  await dialog.waitFor({ state: "hidden" });

  const mod = await newPerson(browser, "moderator", pageErrors);

  step("a wrong password is refused in words, then the moderator signs in with password and TOTP");
  await mod.goto(ADMIN_URL);
  await heading(mod, "Staff sign in");
  await mod.getByLabel("Email").fill(env("MODERATOR_EMAIL"));
  await mod.getByLabel("Password").fill("not the password at all");
  await mod.getByRole("button", { name: "Sign in" }).click();
  await mod.getByRole("alert").filter({ hasText: "do not match an account" }).waitFor();
  await shot(mod, "signin-error");
  await signIn(mod, env("MODERATOR_EMAIL"), env("MODERATOR_SECRET"));

  step("the queue lists the reported listing; the moderator opens its case");
  await heading(mod, "Moderation queue");
  const nav = mod.getByRole("navigation", { name: "Main" });
  await nav.getByRole("link", { name: "Moderation queue" }).waitFor();
  if (await nav.getByRole("link", { name: "Audit log" }).count()) throw new Error("a moderator is offered the audit log");
  const row = mod.getByRole("row").filter({ has: mod.getByRole("link", { name: PET }) });
  await row.getByRole("cell", { name: "0.82" }).waitFor(); // the fraud score's risk
  await row.getByText(PET_NAME).waitFor(); // the listing by its name, not only its resource name
  await row.getByText(`${OWNER_NAME} <`).waitFor();
  await shot(mod, "queue");
  await row.getByRole("link", { name: PET }).click();
  await mod.waitForURL(/\/admin\/cases\/[^/]+$/);
  await heading(mod, /^Case: /);
  const caseUrl = mod.url();

  step("the case shows the report and the fraud factors");
  await mod.getByText("Scam", { exact: true }).waitFor();
  await mod.getByText("asks to pay by gift card before meeting").waitFor();
  await mod.getByRole("table", { name: "Factors, largest first" }).getByText(FACTOR).waitFor();
  await mod.getByRole("button", { name: "Claim this case" }).click();
  await mod.getByRole("status").filter({ hasText: "You have claimed this case." }).waitFor();
  await shot(mod, "case");

  step("an action without a reason: the reason field says what is wrong");
  await mod.getByRole("radio", { name: "Hide the listing" }).check();
  await mod.getByRole("button", { name: "Take action" }).click();
  await mod.locator("textarea[name=reason][aria-invalid=true]").waitFor();
  await mod.getByRole("alert").waitFor();
  await shot(mod, "case-error");

  step("hide the listing with a reason");
  await mod.getByLabel("Reason", { exact: true }).fill("Scam: asks for gift cards before meeting.");
  await mod.getByRole("button", { name: "Take action" }).click();
  await mod.getByRole("status").filter({ hasText: "Action taken." }).waitFor();
  await mod.locator(".facts").getByText("Hide the listing").waitFor();
  await mod.locator(".history").getByText("Scam: asks for gift cards before meeting.", { exact: false }).waitFor();
  if (await mod.getByRole("button", { name: "Take action" }).count()) throw new Error("a resolved case still offers actions");
  await shot(mod, "case-resolved");

  step("the owner's record: the listing is hidden, the moderator may change the account's status");
  await nav.getByRole("link", { name: "Users" }).click();
  await heading(mod, "Users");
  await mod.getByLabel("Email or name").fill(OWNER_NAME);
  await mod.getByRole("button", { name: "Search" }).click();
  await mod.getByRole("link", { name: OWNER_NAME }).click();
  await heading(mod, OWNER_NAME);
  await mod.getByRole("listitem").filter({ hasText: PET }).getByText("hidden").waitFor();
  await mod.getByRole("heading", { name: "Change status" }).waitFor();
  if (await mod.getByRole("heading", { name: "Change role" }).count()) throw new Error("a moderator is offered roles");
  await shot(mod, "user");

  step("the dashboard's daily counts as charts");
  await nav.getByRole("link", { name: "Dashboard" }).click();
  await heading(mod, "Dashboard");
  await mod.getByRole("img", { name: /^Reports: [1-9]\d* in 30 days/ }).waitFor();
  await shot(mod, "dashboard");

  step("support: accounts and the dashboard, no moderator action anywhere");
  const support = await newPerson(browser, "support", pageErrors);
  await signIn(support, env("SUPPORT_EMAIL"), env("SUPPORT_SECRET"));
  await heading(support, "Dashboard");
  const supportNav = support.getByRole("navigation", { name: "Main" });
  await supportNav.getByRole("link", { name: "Users" }).waitFor();
  for (const name of ["Moderation queue", "Audit log"]) {
    if (await supportNav.getByRole("link", { name }).count()) throw new Error(`support is offered ${name}`);
  }
  await supportNav.getByRole("link", { name: "Users" }).click();
  await support.getByLabel("Email or name").fill(OWNER_NAME);
  await support.getByRole("button", { name: "Search" }).click();
  await support.getByRole("link", { name: OWNER_NAME }).click();
  await heading(support, OWNER_NAME);
  await support.getByRole("heading", { name: "Listings (1)" }).waitFor();
  for (const name of ["Change status", "Change role"]) {
    if (await support.getByRole("heading", { name }).count()) throw new Error(`support is offered ${name}`);
  }
  if (await support.getByRole("link", { name: PET }).count()) throw new Error("support is linked to a case");
  await shot(support, "support-user");
  await support.goto(caseUrl);
  await heading(support, "Not available to you");
  if (await support.getByRole("button", { name: "Take action" }).count()) throw new Error("support is offered an action");

  step("admin: the accounts with the moderator role (auth's ListAccounts)");
  const admin = await newPerson(browser, "admin", pageErrors);
  await signIn(admin, env("ADMIN_EMAIL"), env("ADMIN_SECRET"));
  await admin.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Users" }).click();
  await heading(admin, "Users");
  await admin.getByLabel("Role", { exact: true }).selectOption({ label: "Moderator" });
  await admin.getByRole("button", { name: "List" }).click();
  await admin.getByRole("row").filter({ hasText: env("MODERATOR_EMAIL") })
    .getByRole("cell", { name: "Moderator", exact: true }).waitFor();
  step("admin: the audit log has the decision, and its hash chain verifies");
  await admin.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Audit log" }).click();
  await heading(admin, "Audit log");
  await admin.getByRole("row").filter({ hasText: "ResolveCase" }).filter({ hasText: "ACTION_HIDE_LISTING" }).first().waitFor();
  await admin.getByRole("button", { name: "Verify the log" }).click();
  await admin.getByRole("status").filter({ hasText: /The log is intact: \d+ entries checked/ }).waitFor();
  await shot(admin, "audit");
  await admin.goto(caseUrl);
  await admin.getByRole("heading", { name: "Reverse the action in force" }).waitFor(); // admins only

  if (pageErrors.length) throw new Error(`the pages logged errors:\n${pageErrors.join("\n")}`);
  step("done");
} finally {
  await browser.close();
}
