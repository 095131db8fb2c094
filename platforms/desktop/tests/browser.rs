//! The provider's web console in headless Chromium (Debian's `chromium` and `chromium-driver`,
//! through ChromeDriver), in front of a real session: relay, `lifeline support`, `lifeline join`
//! on loopback. The page chats with the customer, sends a file the customer accepts (SHA-256
//! compared), asks for diagnostics and shows them. Screenshots are saved in `<target>/` as
//! `desktop-web-console.png` (the end) and the user guide's three (`console-*.png`); with
//! `LIFELINE_USER_GUIDE_SHOTS=DIR` the three are also written to DIR, which is how
//! `docs/user-guide/` is made:
//!
//! ```sh
//! LIFELINE_USER_GUIDE_SHOTS=docs/user-guide cargo test -p lifeline-desktop --test browser
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};

use support::webdriver::Driver;
use support::{App, LIMIT, Relay, TempDir, dev_pki, digits_after, random_file, sha256_file};

#[test]
fn the_web_console_in_headless_chromium_chats_sends_a_file_and_shows_diagnostics() {
    let temp = TempDir::new("browser");
    let dev = dev_pki(temp.path(), "dev");
    let relay = Relay::start(&dev);
    let provider = App::start([
        "support".as_ref(),
        "--dev".as_ref(),
        dev.as_os_str(),
        "--relay".as_ref(),
        relay.address().as_ref(),
        "--name".as_ref(),
        "Ada (Helpdesk)".as_ref(),
        "--downloads".as_ref(),
        temp.path().join("provider-downloads").as_os_str(),
    ]);
    let session = digits_after(&provider.expect("Session number:"), "Session number:");
    let pin_line = provider.expect("PIN:");
    let pin = digits_after(&pin_line, "PIN:");
    let url = provider.expect("http://127.0.0.1:").trim().to_owned();
    let downloads = temp.path().join("downloads");
    let mut customer = App::start([
        "join".as_ref(),
        "--dev".as_ref(),
        dev.as_os_str(),
        "--relay".as_ref(),
        relay.address().as_ref(),
        "--name".as_ref(),
        "Grace".as_ref(),
        "--downloads".as_ref(),
        downloads.as_os_str(),
    ]);
    customer.type_line(&session);
    customer.type_line(&pin);
    customer.expect("Connected to Ada (Helpdesk)");

    let shots = Shots::from_env();
    let driver = Driver::start(&temp.path().join("profile"));
    driver.navigate(&url);
    driver.wait_text("session-number", &support::group3(&session));
    driver.wait_text("members", "Grace");
    // The PIN is grouped as on the provider's terminal ("9913 4711"), not differently.
    let pin_on_terminal = pin_line.split_once("PIN:").unwrap().1.trim();
    driver.wait_text("pin", pin_on_terminal);
    // Someone joining is a message in the page, not only on the terminal.
    driver.wait_text("errors", "Grace (Customer) joined.");

    // Chat from the page.
    driver.type_into("#chat-input", "Hello Grace, Ada here.");
    driver.click("#chat-send");
    customer.expect("Ada (Helpdesk): Hello Grace, Ada here.");
    customer.type_line("Hi Ada!");
    driver.wait_text("chat-log", "Hi Ada!");

    // Ask for files and diagnostics from the page; both wait for the customer, who then allows
    // both at its terminal.
    driver.click("#requests button[data-capability=\"file_transfer\"]");
    customer.expect("/allow files");
    driver.click("#requests button[data-capability=\"diagnostics\"]");
    customer.expect("/allow diagnostics");
    driver.wait_text("members", "Diagnostics: asked");
    shots.take(&driver, "console-consent-pending.png");
    customer.type_line("/allow files");
    customer.type_line("/allow diagnostics");
    provider.expect("Grace allowed: diagnostics");
    driver.wait_text("errors", "Grace allowed: diagnostics.");

    // Send a file through the page's picker: the customer accepts it and the hashes match.
    let file = temp.path().join("printer-driver.bin");
    random_file(&file, 700_000);
    driver.type_into("#file-input", file.to_str().unwrap());
    driver.click("#file-send");
    let offer = customer.expect("offers you the file printer-driver.bin");
    customer.type_line(&format!("/accept {}", offer.rsplit(' ').next().unwrap()));
    customer.expect("Received printer-driver.bin");
    assert_eq!(sha256_file(&downloads.join("printer-driver.bin")), sha256_file(&file));
    driver.wait_text("transfers", "printer-driver.bin");

    // A file from the customer: accepted in the page, shown with its size and SHA-256.
    let log = temp.path().join("install.log");
    random_file(&log, 3_000);
    customer.type_line(&format!("/send {}", log.display()));
    driver.wait_text("transfers", "install.log");
    driver.click("#transfers .transfer.offered button.primary");
    provider.expect("Received install.log");
    driver.wait_text("transfers", &sha256_file(&log));
    driver.wait_text("transfers", "from the customer, 2.9 KiB");
    shots.take(&driver, "console-files-chat.png");

    // Diagnostics in the viewer.
    driver.type_into("#diag-sections", "system, memory");
    driver.click("#diag-query");
    customer.expect("Sending diagnostics to Ada (Helpdesk)");
    driver.wait_text("diag-view", "os.family");
    shots.take(&driver, "console-diagnostics.png");

    // Taken back and refused show as such (not as if never asked).
    customer.type_line("/revoke diagnostics");
    driver.wait_text("members", "Diagnostics: taken back");
    driver.wait_text("errors", "Grace took back: diagnostics.");
    driver.click("#requests button[data-capability=\"remote_control\"]");
    customer.expect("/allow control");
    customer.type_line("/deny control");
    driver.wait_text("members", "Remote control: refused");

    shots.take(&driver, "desktop-web-console.png");

    driver.click("#end-session");
    driver.click("#end-yes");
    customer.expect("Session ended by Ada (Helpdesk)");
    let mut provider = provider;
    assert_eq!(provider.wait(LIMIT).code(), Some(0));
}

/// Where the screenshots go: always the target folder; the user guide's also to
/// `LIFELINE_USER_GUIDE_SHOTS` when it is set.
struct Shots {
    target: PathBuf,
    guide: Option<PathBuf>,
}

impl Shots {
    fn from_env() -> Shots {
        let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().to_owned();
        // A relative folder is the workspace's (cargo runs tests in the crate's folder).
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let guide = std::env::var_os("LIFELINE_USER_GUIDE_SHOTS").map(|dir| root.join(dir));
        Shots { target, guide }
    }

    fn take(&self, driver: &Driver, name: &str) {
        let shot = self.target.join(name);
        driver.screenshot(&shot);
        println!("screenshot: {}", shot.display());
        if let Some(guide) = self.guide.as_ref().filter(|_| name.starts_with("console-")) {
            std::fs::create_dir_all(guide).unwrap();
            std::fs::copy(&shot, guide.join(name)).unwrap();
            println!("copied to {}", guide.join(name).display());
        }
    }
}
