// The web app in Debian's Chromium, driven by Playwright (tests/e2e/web/test_web_browser.py starts the
// platform, seeds it and runs this). Every wait is Playwright's: for an element, a URL or a condition.
// Environment: WEB_URL, SCREENSHOTS (a directory), EMAIL and PASSWORD of the account to create, DOG and CAT
// (display names of two seeded pets: a dog with a photo near Tokyo, a cat in Osaka), MFA_EMAIL and MFA_SECRET
// (an account with the second factor on, its password PASSWORD), DEMO_EMAIL (whom to be at the demo provider),
// EXPIRED_SESSION (a stored session, as JSON, whose access token has expired), OWNER_EMAIL (the seeded owner
// of DOG and CAT, password PASSWORD), WALKER_EMAIL (the owner of the business "Happy Paws"), HELD_PET (a listing of
// OWNER_EMAIL's held by moderation), NEW_PET (a name for the pet the owner lists through the form), PHOTO (a JPEG
// file, uploaded as its photo and sent as a chat attachment).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { env, launch, newPerson as personIn, totp } from "@petplatform/kit/e2e/chromium";

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
const OWNER_EMAIL = env("OWNER_EMAIL");
const WALKER_EMAIL = env("WALKER_EMAIL");
const HELD_PET = env("HELD_PET");
const NEW_PET = env("NEW_PET");
const PHOTO = env("PHOTO");
mkdirSync(SCREENSHOTS, { recursive: true });

const browser = await launch();
// Anything a page logs as an error (a refused CORS call, a CSP violation, an uncaught exception) fails the run.
const pageErrors = [];
/** A page in a browser context of its own: its own sessionStorage, so its own signed-in person. */
const newPerson = (who) => personIn(browser, who, pageErrors);
const page = await newPerson("first");

const shot = (name, on = page) => on.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
const heading = (name, on = page) => on.getByRole("heading", { level: 1, name }).waitFor();
let adopter = null;
let owner = null;
let walker = null;
/** A link of the main navigation. */
const nav = (on, name) => on.getByRole("navigation", { name: "Main" }).getByRole("link", { name, exact: true });
/** An image on the page has loaded (its bytes arrived and decoded). */
const loaded = async (img, on = page) =>
  on.waitForFunction((el) => el.complete && el.naturalWidth > 0, await img.elementHandle());

async function signIn(on, email) {
  await on.goto(`${WEB_URL}/signin`);
  await heading("Sign in", on);
  await on.getByLabel("Email").fill(email);
  await on.getByLabel("Password").fill(PASSWORD);
  await on.getByRole("button", { name: "Sign in", exact: true }).click();
  await on.getByText(email).waitFor();
}
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
  // The next step's code: enrolling used the current step's, which is spent.
  await page.getByLabel("Code").fill(totp(MFA_SECRET, 1));
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

  step("two people in two contexts: the one who signed up opens the feed near Tokyo, with reasons");
  adopter = await newPerson("adopter");
  owner = await newPerson("owner");
  await signIn(adopter, EMAIL);
  await signIn(owner, OWNER_EMAIL);
  await adopter.getByRole("link", { name: "Feed" }).click();
  await heading("Your feed", adopter);
  await adopter.getByLabel("Near").selectOption({ label: "Tokyo (within 100 km)" });
  const dogInFeed = adopter.getByRole("listitem", { name: DOG });
  await dogInFeed.getByRole("heading", { name: `Why you see ${DOG}` }).waitFor();
  await dogInFeed.getByText(/km away|nearby/i).first().waitFor();
  await shot("feed", adopter);

  step("pass on the dog, undo, then like it");
  await dogInFeed.getByRole("button", { name: "Pass" }).click();
  await adopter.getByText(`You passed on ${DOG}.`).waitFor();
  await dogInFeed.waitFor({ state: "detached" });
  await adopter.getByRole("button", { name: "Undo last swipe" }).click();
  await adopter.getByText("Your last swipe was undone.").waitFor();
  await dogInFeed.getByRole("button", { name: "Like", exact: true }).click();
  await adopter.getByText(`You liked ${DOG}. The owner has been told.`).waitFor();

  step("the owner accepts the interest: they match");
  await owner.getByRole("link", { name: "Matches" }).click();
  await heading("Matches and interests", owner);
  const interest = owner.getByRole("list", { name: "Interest in your pets" }).getByRole("listitem")
    .filter({ hasText: DOG });
  await interest.getByRole("button", { name: "Accept" }).click();
  await owner.getByText(/You matched with .*You can now chat/).waitFor();
  await owner.getByRole("list", { name: "Your matches" }).getByText(DOG).waitFor();
  await shot("matches", owner);

  step("both open the chat; the adopter sees the owner online; the adopter's message reaches the owner live, with typing and a read receipt");
  await adopter.getByRole("link", { name: "Chats" }).click();
  await heading("Chats", adopter);
  const room = adopter.getByRole("list", { name: "Your chats" }).getByRole("link").first();
  await room.waitFor(); // the room is made from the match event, and arrives on the live stream
  await owner.getByRole("list", { name: "Your matches" }).getByRole("link", { name: "Open chat" }).first().click();
  await heading(/^Chat with/, owner);
  await room.click();
  await heading(/^Chat with/, adopter);
  await adopter.getByText(/ is online$/).waitFor(); // the owner's page streams: presence, told as the stream opens
  await adopter.getByRole("textbox", { name: "Message" }).fill("Hello! Is Mochi still looking for a home?");
  await owner.getByText(/is typing…/).waitFor();
  await adopter.getByRole("button", { name: "Send" }).click();
  await owner.getByRole("list", { name: "Messages" }).getByText("Is Mochi still looking for a home?").waitFor();
  await adopter.getByText("· Seen").waitFor(); // the owner's page marked it read
  await owner.getByRole("textbox", { name: "Message" }).fill("Yes! Come and meet her.");
  await owner.getByRole("button", { name: "Send" }).click();
  await adopter.getByRole("list", { name: "Messages" }).getByText("Come and meet her.").waitFor();
  await shot("chat", adopter);

  step("the owner's chats list counts what is unread");
  await owner.getByRole("link", { name: "All chats" }).click();
  await heading("Chats", owner);
  await adopter.getByRole("textbox", { name: "Message" }).fill("See you on Saturday.");
  await adopter.getByRole("button", { name: "Send" }).click();
  await owner.getByText("1 unread").waitFor();
  await shot("chats", owner);

  step("the adopter's notifications say it's a match (made from the match event: looked at until it is there)");
  const matchNote = adopter.getByRole("list", { name: "Your notifications" }).getByRole("link", { name: "It's a match!" });
  for (let tries = 0; ; tries++) {
    await adopter.getByRole("link", { name: "Notifications" }).click();
    await heading("Notifications", adopter);
    await adopter.getByText(/unread|Nothing unread/).waitFor();
    if (await matchNote.count() > 0 || tries === 10) break;
    await adopter.getByRole("link", { name: "Feed" }).click();
  }
  await matchNote.first().waitFor();
  await shot("notifications", adopter);
  await adopter.getByRole("button", { name: "Mark all read" }).click();
  await adopter.getByText("Nothing unread.").waitFor();

  step("the owner books a dog walker near Tokyo for the dog");
  await owner.getByRole("link", { name: "Services" }).click();
  await heading("Pet services nearby", owner);
  await owner.getByRole("list", { name: "Businesses" }).getByRole("link", { name: "Happy Paws" }).click();
  await heading("Happy Paws", owner);
  await owner.getByRole("radio").first().waitFor(); // the free slots of the next two weeks
  await owner.getByRole("checkbox", { name: DOG }).check();
  await shot("business", owner);
  await owner.getByRole("button", { name: "Request booking" }).click();
  await owner.getByRole("status").filter({ hasText: "Booked: Walk" }).waitFor();
  await owner.getByRole("link", { name: "See your bookings" }).click();
  await heading("Your bookings", owner);
  await owner.getByRole("list", { name: "Your bookings" }).getByText("Waiting for the business").waitFor();
  await owner.getByRole("list", { name: "Your bookings" }).getByText(DOG).waitFor();
  await shot("bookings", owner);

  step("the owner's pets: a held listing says so, to its owner only");
  await nav(owner, "My pets").click();
  await heading("Your pets", owner);
  const heldRow = owner.getByRole("list", { name: "Your pets" }).getByRole("listitem").filter({ hasText: HELD_PET });
  await heldRow.getByText("Held for review").waitFor();
  await shot("my-pets", owner);
  await heldRow.getByRole("link", { name: HELD_PET }).click();
  await heading(`Edit ${HELD_PET}`, owner);
  await owner.getByRole("status").filter({ hasText: "Only you can see this listing" }).waitFor();
  await shot("pet-held", owner);

  step("the owner lists a pet through the form, with a photo");
  await owner.getByRole("link", { name: "← Your pets" }).click();
  await owner.getByRole("link", { name: "List a pet" }).click();
  await heading("List a pet", owner);
  await owner.getByLabel("Name").fill(NEW_PET);
  await owner.getByLabel("Species").selectOption({ label: "Dog" });
  await owner.getByLabel("Breed").fill("Kai Ken");
  await owner.getByLabel("Where").selectOption({ label: "Tokyo" });
  await owner.getByLabel("Children").check();
  await owner.getByLabel("Description").fill("A calm brindle dog who loves long walks and naps in the sun.");
  await owner.getByRole("button", { name: "List this pet" }).click();
  await heading(`Edit ${NEW_PET}`, owner);
  await owner.getByText(`${NEW_PET} is listed.`).waitFor();
  await owner.getByLabel("Add photos").setInputFiles(PHOTO);
  await owner.getByText("The photo was added.").waitFor();
  await loaded(owner.getByRole("img", { name: `${NEW_PET}, photo 1 of 1` }), owner);
  await shot("pet-form", owner);

  step("the owner books again, with a card that asks for 3-D Secure");
  await nav(owner, "Services").click();
  await heading("Pet services nearby", owner);
  await owner.getByRole("list", { name: "Businesses" }).getByRole("link", { name: "Happy Paws" }).click();
  await heading("Happy Paws", owner);
  await owner.getByRole("radio").first().waitFor();
  await owner.getByRole("checkbox", { name: DOG }).check();
  await owner.getByLabel("Payment").selectOption({ label: "Test card: asks for 3-D Secure" });
  await owner.getByRole("button", { name: "Request booking" }).click();
  await owner.getByRole("status").filter({ hasText: "Booked: Walk" }).waitFor();

  step("the business accepts both bookings, then starts and completes the paid one");
  walker = await newPerson("walker");
  await signIn(walker, WALKER_EMAIL);
  await nav(walker, "My business").click();
  await heading("Your business's bookings", walker);
  const incoming = walker.getByRole("list", { name: "Incoming bookings" });
  const accept = incoming.getByRole("button", { name: /^Accept:/ });
  await accept.nth(1).waitFor(); // both requests
  await accept.first().click();
  await accept.nth(1).waitFor({ state: "detached" });
  await accept.click();
  await accept.waitFor({ state: "detached" });
  await incoming.getByRole("button", { name: /^Start:/ }).click(); // shown once the visa charge is paid
  await walker.getByRole("status").filter({ hasText: "Started." }).waitFor();
  await incoming.getByRole("button", { name: /^Complete:/ }).click();
  await walker.getByRole("status").filter({ hasText: "Completed" }).waitFor();
  await incoming.getByText("Done").waitFor();
  await shot("incoming", walker);

  step("the owner confirms the other charge at the bank (3-D Secure), then cancels it with the policy's refund");
  await nav(owner, "Bookings").click();
  await heading("Your bookings", owner);
  const toConfirm = owner.getByRole("group", { name: "Payment to confirm" });
  await toConfirm.getByRole("link", { name: "Confirm with your bank" }).waitFor();
  await shot("3ds", owner);
  const [bank] = await Promise.all([owner.context().waitForEvent("page"),
                                    toConfirm.getByRole("link", { name: "Confirm with your bank" }).click()]);
  await bank.getByRole("heading", { name: "Confirm your payment" }).waitFor();
  await shot("bank", bank);
  await bank.getByRole("button", { name: "Confirm payment" }).click();
  await bank.getByRole("heading", { name: "Payment confirmed" }).waitFor();
  await bank.close();
  await toConfirm.waitFor({ state: "detached" }); // the app saw the bank's answer
  const bookingsList = owner.getByRole("list", { name: "Your bookings" });
  const confirmed = bookingsList.getByRole("listitem").filter({ hasText: "Accepted" });
  await confirmed.getByText(/· Paid/).waitFor();
  await confirmed.getByRole("button", { name: "Cancel booking…" }).click();
  await owner.getByRole("group", { name: "Cancel this booking" }).getByText(/back in full/).waitFor();
  await shot("cancel", owner);
  await owner.getByRole("button", { name: "Yes, cancel it" }).click();
  await owner.getByRole("status").filter({ hasText: /The booking is cancelled\. You get .* back in full/ }).waitFor();
  await bookingsList.getByRole("listitem").filter({ hasText: "cancelled by you" }).getByText(/Refunded in full/).waitFor();

  step("reviews, double-blind: the owner reviews the walk, then the business reviews the owner and both show");
  await bookingsList.getByRole("form", { name: "Review Happy Paws" }).waitFor();
  await owner.getByLabel("5 stars").check();
  await owner.getByLabel("Your review").fill("Punctual and kind; Mochi came back happy.");
  await owner.getByRole("button", { name: "Publish review" }).click();
  await owner.getByText(/will see it once they have reviewed you too/).waitFor();
  await shot("review", owner);
  await walker.reload();
  await heading("Your business's bookings", walker);
  await walker.getByRole("form", { name: /^Review / }).waitFor();
  await walker.getByLabel("4 stars").check();
  await walker.getByRole("button", { name: "Publish review" }).click();
  await walker.getByText(/'s review of you:/).waitFor(); // both have written: the owner's is published
  await owner.reload();
  await heading("Your bookings", owner);
  await owner.getByText("Happy Paws's review of you:").waitFor();

  step("the one who signed up turns on two-factor authentication from a QR code");
  await nav(adopter, "Security").click();
  await heading("Two-factor authentication", adopter);
  await adopter.getByRole("button", { name: "Set up two-factor authentication" }).click();
  await loaded(adopter.getByRole("img", { name: /QR code/ }), adopter);
  const enrolSecret = await adopter.locator("code[aria-label='Secret key']").innerText();
  await shot("mfa-enrol", adopter);
  await adopter.getByLabel("Code").fill(totp(enrolSecret, 0));
  await adopter.getByRole("button", { name: "Turn on" }).click();
  await adopter.getByRole("list", { name: "Recovery codes" }).waitFor();
  await adopter.getByText("Two-factor authentication is on.").waitFor();

  step("a photo sent in the chat reaches the owner, fetched by a member only");
  await nav(adopter, "Chats").click();
  await heading("Chats", adopter);
  await adopter.getByRole("list", { name: "Your chats" }).getByRole("link").first().click();
  await heading(/^Chat with/, adopter);
  await nav(owner, "Chats").click();
  await heading("Chats", owner);
  await owner.getByRole("list", { name: "Your chats" }).getByRole("link", { name: "Browser Tester" }).click();
  await heading("Chat with Browser Tester", owner);
  await adopter.getByLabel("Attach files").setInputFiles(PHOTO);
  await adopter.getByText("1 file ready").waitFor();
  await adopter.getByRole("textbox", { name: "Message" }).fill("Here is Kuro, by the way.");
  await adopter.getByRole("button", { name: "Send" }).click();
  await loaded(owner.getByRole("img", { name: /^Image sent:/ }), owner);
  await shot("chat-attachment", owner);

  step("the owner unmatches the other match; the one who signed up blocks the owner from the chat");
  await nav(owner, "Matches").click();
  await heading("Matches and interests", owner);
  await owner.getByRole("button", { name: "Unmatch with Careful" }).click();
  await owner.getByRole("button", { name: "Yes, unmatch" }).click();
  await owner.getByText("You unmatched with Careful.").waitFor();
  await owner.getByRole("button", { name: "Unmatch with Careful" }).waitFor({ state: "detached" });
  await shot("unmatch", owner);
  await adopter.getByRole("button", { name: "Block Shelter" }).click();
  await adopter.getByRole("button", { name: "Yes, block" }).click();
  await adopter.getByText("You blocked Shelter.").waitFor();
  await adopter.getByText("This chat is closed").waitFor(); // the room's own event closes it
  await shot("blocked", adopter);

  step("the owner ends their other sessions");
  await owner.getByRole("link", { name: "Sessions" }).click();
  await heading("Where you are signed in", owner);
  await owner.getByText("This browser").waitFor();
  await owner.getByRole("button", { name: "Sign out everywhere else" }).click();
  await owner.getByText(/sessions? (was|were) signed out/).waitFor();
  await owner.getByRole("button", { name: "Sign out everywhere else" }).waitFor({ state: "detached" });
  await shot("sessions", owner);

  if (pageErrors.length) throw new Error(`the page reported errors:\n${pageErrors.join("\n")}`);
  console.log("browser test passed");
} catch (error) {
  await shot("failure").catch(() => {});
  if (adopter) await shot("failure-adopter", adopter).catch(() => {});
  if (owner) await shot("failure-owner", owner).catch(() => {});
  if (walker) await shot("failure-walker", walker).catch(() => {});
  console.error(`browser test failed at ${page.url()}: ${error.stack ?? error}`);
  if (pageErrors.length) console.error(`page errors:\n${pageErrors.join("\n")}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
