//! The bench the window's end-to-end tests run on: a private X display
//! (Xvfb), a private D-Bus session with an unlocked keyring and a
//! notification daemon (dunst), and the real app driven over WebDriver
//! (tauri-driver in front of WebKitWebDriver).
//!
//! Nothing is skipped: a missing program fails the test with the package
//! to install. Every process started here is ended when its owner drops.

#![allow(dead_code)] // each test file uses its own part of the bench

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use tempfile::TempDir;

/// How long a page element may take to appear.
pub const ELEMENT_WAIT: Duration = Duration::from_secs(30);

/// Programs the bench needs, with the Debian package that has each.
const PROGRAMS: [(&str, &str); 7] = [
    ("Xvfb", "xvfb"),
    ("dbus-daemon", "dbus"),
    ("dbus-send", "dbus"),
    ("gnome-keyring-daemon", "gnome-keyring"),
    ("dunst", "dunst"),
    ("dunstctl", "dunst"),
    ("WebKitWebDriver", "webkit2gtk-driver"),
];

/// The display, the session bus and the daemons on it.
pub struct Desktop {
    pub work: TempDir,
    pub display: String,
    pub bus: String,
    children: Vec<(&'static str, Child)>,
}

impl Desktop {
    /// Starts Xvfb, a session bus, an unlocked keyring and dunst.
    pub fn start() -> Desktop {
        for (program, package) in PROGRAMS {
            assert!(
                find_program(program).is_some(),
                "{program} is missing: install the Debian package {package} (.ci/setup-system does)"
            );
        }
        let work = tempfile::Builder::new()
            .prefix("fwu-window-test.")
            .tempdir()
            .expect("a temporary directory");
        let runtime = work.path().join("runtime");
        std::fs::create_dir_all(&runtime).expect("runtime directory");
        set_mode(&runtime, 0o700);
        let mut desktop = Desktop {
            display: String::new(),
            bus: String::new(),
            children: Vec::new(),
            work,
        };

        let mut xvfb = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1400x900x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb starts");
        let number = first_line(xvfb.stdout.take().expect("Xvfb's output"), "Xvfb");
        desktop.children.push(("Xvfb", xvfb));
        desktop.display = format!(":{}", number.trim());

        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            // It says it cannot raise its file limit when not run at login.
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon starts");
        let address = first_line(
            bus.stdout.take().expect("dbus-daemon's output"),
            "dbus-daemon",
        );
        desktop.children.push(("dbus-daemon", bus));
        desktop.bus = address.trim().to_string();

        let mut keyring = desktop
            .command("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("XDG_DATA_HOME", desktop.work.path().join("data"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gnome-keyring-daemon starts");
        let mut stdin = keyring.stdin.take().expect("the keyring's input");
        stdin
            .write_all(b"fwu-window-test")
            .expect("keyring password written");
        drop(stdin);
        desktop.children.push(("gnome-keyring-daemon", keyring));
        desktop.wait_for_bus_name("org.freedesktop.secrets");

        let dunst = desktop
            .command("dunst")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dunst starts");
        desktop.children.push(("dunst", dunst));
        desktop.wait_for_bus_name("org.freedesktop.Notifications");
        desktop
    }

    /// A command that runs on this display and bus.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .env("DISPLAY", &self.display)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .env("XDG_RUNTIME_DIR", self.work.path().join("runtime"))
            .env_remove("WAYLAND_DISPLAY");
        command
    }

    /// Waits until a service owns `name` on the bus.
    fn wait_for_bus_name(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let output = self
                .command("dbus-send")
                .args([
                    "--session",
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    &format!("string:{name}"),
                ])
                .output()
                .expect("dbus-send runs");
            if String::from_utf8_lossy(&output.stdout).contains("boolean true") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nothing took {name} on the test's bus in 20 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The notifications dunst received, as (summary, body), oldest
    /// first; reading them closes those on screen.
    pub fn notifications(&self) -> Vec<(String, String)> {
        let closed = self
            .command("dunstctl")
            .arg("close-all")
            .status()
            .expect("dunstctl");
        assert!(closed.success(), "dunstctl close-all failed");
        let output = self
            .command("dunstctl")
            .arg("history")
            .output()
            .expect("dunstctl");
        assert!(output.status.success(), "dunstctl history failed");
        let history: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("dunstctl history prints JSON");
        let text = |entry: &serde_json::Value, key: &str| {
            entry[key]["data"].as_str().unwrap_or_default().to_string()
        };
        let mut all: Vec<(String, String)> = history["data"][0]
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .map(|e| (text(e, "summary"), text(e, "body")))
                    .collect()
            })
            .unwrap_or_default();
        all.reverse();
        all
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        while let Some((_, mut child)) = self.children.pop() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The app under test, driven over WebDriver.
pub struct Window {
    pub client: Client,
    driver: Child,
    pub data_dir: PathBuf,
}

impl Window {
    /// Starts tauri-driver and opens the app on `data_dir`.
    pub async fn open(desktop: &Desktop, data_dir: &Path) -> Window {
        let driver_program = find_program("tauri-driver").unwrap_or_else(|| {
            panic!(
                "tauri-driver is missing: cargo install tauri-driver --locked --version '^2' \
                 (.ci/run does)"
            )
        });
        let port = free_port();
        let native_port = free_port();
        let webkit = find_program("WebKitWebDriver").expect("checked by Desktop::start");
        let driver = desktop
            .command(driver_program)
            .args([
                "--port",
                &port.to_string(),
                "--native-port",
                &native_port.to_string(),
            ])
            .arg("--native-driver")
            .arg(webkit)
            .env("FWU_DATA_DIR", data_dir)
            .env("FWU_KEYRING_SERVICE", "fwu-window-test")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tauri-driver starts");
        wait_for_port(port);

        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "tauri:options".to_string(),
            serde_json::json!({ "application": env!("CARGO_BIN_EXE_firmware-upgrader") }),
        );
        capabilities.insert("browserName".to_string(), "wry".into());
        let client = ClientBuilder::native()
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session with the app");
        let window = Window {
            client,
            driver,
            data_dir: data_dir.to_path_buf(),
        };
        window.wait_for("main[data-view]").await;
        window
    }

    /// Opens a view by its route, such as `#/devices`, and waits for it.
    pub async fn go(&self, route: &str, view: &str) {
        self.client
            .execute("location.hash = arguments[0];", vec![route.into()])
            .await
            .expect("the route changes");
        self.wait_for(&format!("main[data-view='{view}'] h2")).await;
    }

    /// Waits for an element and returns it.
    pub async fn wait_for(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(ELEMENT_WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("no element {css} within 30 s: {error}"))
    }

    /// Finds the element afresh and acts on it, again when the page
    /// re-rendered it between the two (live boards redraw every second or
    /// so, and a found element may be gone when it is read).
    async fn on_element<T, F, Fut>(&self, css: &str, what: &str, mut act: F) -> T
    where
        F: FnMut(Element) -> Fut,
        Fut: std::future::Future<Output = Result<T, fantoccini::error::CmdError>>,
    {
        let mut tries = 0;
        loop {
            let element = self.wait_for(css).await;
            match act(element).await {
                Ok(value) => return value,
                Err(error) if error.is_stale_element_reference() && tries < 20 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("{what} {css}: {error}"),
            }
        }
    }

    /// The text of an element, once it is there.
    pub async fn text(&self, css: &str) -> String {
        self.on_element(
            css,
            "text of",
            |element| async move { element.text().await },
        )
        .await
    }

    /// Types `text` into an empty field.
    pub async fn fill(&self, css: &str, text: &str) {
        self.on_element(css, "fill", |field| async move {
            field.clear().await?;
            field.send_keys(text).await
        })
        .await
    }

    /// Clicks an element.
    pub async fn click(&self, css: &str) {
        self.on_element(css, "click", |element| async move { element.click().await })
            .await
    }

    /// Clicks an element whose click ends the app. The app may exit
    /// before the driver answers, so the click's own answer can be an
    /// error; the caller checks instead that the app's process is gone.
    pub async fn click_to_quit(&self, css: &str) {
        let element = self.wait_for(css).await;
        if let Err(error) = element.click().await {
            println!("the click on {css} that quits the app answered: {error}");
        }
    }

    /// Runs a script in the page and returns its value.
    pub async fn script(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, Vec::new())
            .await
            .expect("script runs")
    }

    /// Runs a script in the page, or gives `None` when it could not run,
    /// as while the page reloads.
    pub async fn script_now(&self, script: &str) -> Option<serde_json::Value> {
        self.client.execute(script, Vec::new()).await.ok()
    }

    /// Polls `check` until it gives a value, for at most `limit`.
    pub async fn wait_until<T, F, Fut>(&self, what: &str, limit: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {} s",
                limit.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The text of the error line, if it shows one.
    pub async fn error_line(&self) -> Option<String> {
        let line = self.client.find(Locator::Css("#error-line")).await.ok()?;
        if line.attr("hidden").await.ok().flatten().is_some() {
            return None;
        }
        line.text().await.ok().filter(|text| !text.is_empty())
    }

    /// Saves a screenshot of the window under the test output.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot directory");
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("screenshot written");
        println!("screenshot: {}", path.display());
        path
    }

    /// Ends the session, which closes the app, and tauri-driver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Window {
    /// Ends tauri-driver even when a test failed before closing the
    /// window, so that no driver outlives its test.
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The project's shared fixtures directory.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/images")
        .join(name)
}

/// The `SHA256:…` fingerprint of an OpenSSH public key, from ssh-keygen.
pub fn openssh_fingerprint(public_key: &str) -> String {
    let mut child = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ssh-keygen runs (install openssh-client)");
    child
        .stdin
        .take()
        .expect("ssh-keygen input")
        .write_all(public_key.as_bytes())
        .expect("key written");
    let output = child.wait_with_output().expect("ssh-keygen ends");
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    text.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("ssh-keygen printed no fingerprint: {text}"))
        .to_string()
}

/// Finds a program on PATH, or in cargo's bin directory for tauri-driver.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// Reads the first line a starting program prints, within 20 s.
fn first_line(output: impl Read + Send + 'static, program: &str) -> String {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(output).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{program} printed nothing within 20 s"));
    assert!(
        !line.trim().is_empty(),
        "{program} ended before it was ready"
    );
    line
}

/// A loopback TCP port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Waits until something listens on a loopback port.
fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "tauri-driver did not listen on {port} in 20 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}
