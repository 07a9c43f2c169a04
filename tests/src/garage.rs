//! A throwaway Garage (a real S3-compatible server) on loopback, for the recordings'
//! object store.
//!
//! [`Garage::start`] writes a single-node `garage.toml` (replication factor 1) in a scratch
//! directory, starts `garage server`, assigns the node a layout, and creates a bucket and a
//! key allowed to read and write it. Stopped and removed on drop. The binary is `garage` on
//! `PATH`, else `~/.cargo/bin/garage`, else `/tmp/garage-install/bin/garage` (`.ci/run`
//! installs it with `cargo install garage --locked`); a missing binary fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::net::free_port;
use crate::process::{Daemon, run, run_ok};
use crate::scratch::Scratch;

/// A running single-node Garage with one bucket and one key.
pub struct Garage {
    bin: PathBuf,
    config: PathBuf,
    scratch: Scratch,
    daemon: Option<Daemon>,
    /// The S3 endpoint (`http://127.0.0.1:PORT`).
    pub endpoint: String,
    /// The S3 API port.
    pub s3_port: u16,
    /// The bucket.
    pub bucket: String,
    /// Access key id.
    pub key_id: String,
    /// Secret key.
    pub secret: String,
}

/// The S3 region Garage answers for.
pub const GARAGE_REGION: &str = "garage";

/// Where the `garage` binary is.
///
/// # Panics
/// If there is none.
pub fn garage_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("garage"))
            .find(|p| p.is_file())
    });
    let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin/garage"));
    on_path
        .into_iter()
        .chain(home)
        .chain(Some(PathBuf::from("/tmp/garage-install/bin/garage")))
        .find(|p| p.is_file())
        .expect("garage not found (PATH, ~/.cargo/bin, /tmp/garage-install/bin): `cargo install garage --locked`")
}

impl Garage {
    /// Starts Garage with bucket `bucket` and a key for it.
    ///
    /// # Panics
    /// If any step fails (with Garage's log).
    pub fn start(bucket: &str) -> Garage {
        let bin = garage_bin();
        let scratch = Scratch::new();
        let s3_port = free_port();
        let rpc_port = free_port();
        let mut random = [0u8; 32];
        std::io::Read::read_exact(
            &mut std::fs::File::open("/dev/urandom").expect("/dev/urandom"),
            &mut random,
        )
        .expect("/dev/urandom");
        let secret: String = random.iter().map(|b| format!("{b:02x}")).collect();
        let dir = scratch.path();
        let config = scratch.write_private(
            "garage.toml",
            format!(
                "metadata_dir = \"{meta}\"\n\
                 data_dir = \"{data}\"\n\
                 db_engine = \"sqlite\"\n\
                 replication_factor = 1\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
                 rpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
                 rpc_secret = \"{secret}\"\n\
                 [s3_api]\n\
                 s3_region = \"{GARAGE_REGION}\"\n\
                 api_bind_addr = \"127.0.0.1:{s3_port}\"\n\
                 root_domain = \".s3.garage.localhost\"\n",
                meta = dir.join("meta").display(),
                data = dir.join("data").display(),
            ),
        );
        let mut garage = Garage {
            bin,
            config,
            scratch,
            daemon: None,
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            s3_port,
            bucket: bucket.to_owned(),
            key_id: String::new(),
            secret: String::new(),
        };
        garage.run_server();
        let node = garage.node_id();
        garage.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        garage.cli(&["layout", "apply", "--version", "1"]);
        garage.cli(&["bucket", "create", bucket]);
        let key = garage.cli(&["key", "create", "jitssh-test"]);
        let field = |name: &str| {
            key.lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
                .unwrap_or_else(|| panic!("no {name:?} in `garage key create` output:\n{key}"))
        };
        garage.key_id = field("Key ID:");
        garage.secret = field("Secret key:");
        garage.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            bucket,
            "--key",
            "jitssh-test",
        ]);
        garage
    }

    /// Starts (or restarts) the server and waits until its CLI answers.
    fn run_server(&mut self) {
        let log = self.scratch.file("garage.log");
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c").arg(&self.config).arg("server");
        cmd.env("RUST_LOG", "garage=warn");
        self.daemon = Some(Daemon::spawn("garage", &mut cmd, &log));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = run(&mut self.command(&["node", "id", "-q"]));
            if out.success() {
                break;
            }
            if Instant::now() > deadline {
                panic!("garage did not answer within 30 s: {out}\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The S3 port too.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.s3_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "garage's S3 port never opened\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The node id (for the layout).
    fn node_id(&self) -> String {
        let out = self.cli(&["node", "id", "-q"]);
        out.trim().split('@').next().unwrap_or_default().to_owned()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c").arg(&self.config).args(args);
        cmd
    }

    /// Runs a `garage` CLI command, which must succeed; its stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        run_ok(&mut self.command(args)).stdout_str()
    }

    /// Garage's log.
    pub fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::log).unwrap_or_default()
    }

    /// Stops the server (the data stays): the store is down.
    pub fn stop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.stop();
        }
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.stop();
        self.run_server();
    }

    /// A credentials file for the bastion (`s3_credentials`).
    pub fn credentials_file(&self, path: &Path) {
        std::fs::write(
            path,
            format!(
                "[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
                self.key_id, self.secret
            ),
        )
        .expect("write credentials");
    }

    /// The `[recordings]` keys of a bastion that stores in this Garage (under `prefix`),
    /// reading credentials from `credentials`.
    pub fn recordings_keys(&self, prefix: &str, credentials: &Path) -> String {
        format!(
            "store = \"s3://{}/{prefix}\"\ns3_endpoint = \"{}\"\ns3_region = \"{GARAGE_REGION}\"\n\
             s3_credentials = \"{}\"\ns3_allow_http = true\n",
            self.bucket,
            self.endpoint,
            credentials.display()
        )
    }

    /// A client of the bucket, straight through the S3 API (not through the bastion's code).
    fn client(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(GARAGE_REGION)
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_access_key_id(&self.key_id)
            .with_secret_access_key(&self.secret)
            .build()
            .expect("S3 client")
    }

    /// Every object key in the bucket with its size, listed through the S3 API.
    pub fn objects(&self) -> Vec<(String, u64)> {
        use futures::TryStreamExt;
        use object_store::ObjectStore;
        let client = self.client();
        let mut all: Vec<(String, u64)> = runtime()
            .block_on(client.list(None).try_collect::<Vec<_>>())
            .expect("list the bucket")
            .into_iter()
            .map(|m| (m.location.to_string(), m.size))
            .collect();
        all.sort();
        all
    }

    /// The content of object `key`.
    pub fn get(&self, key: &str) -> Vec<u8> {
        use object_store::ObjectStoreExt;
        let client = self.client();
        runtime()
            .block_on(async {
                client
                    .get(&object_store::path::Path::from(key))
                    .await?
                    .bytes()
                    .await
            })
            .expect("get object")
            .to_vec()
    }

    /// Replaces object `key` (to tamper with a stored recording).
    pub fn put(&self, key: &str, data: Vec<u8>) {
        use object_store::ObjectStoreExt;
        let client = self.client();
        runtime()
            .block_on(client.put(&object_store::path::Path::from(key), data.into()))
            .expect("put object");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

impl Drop for Garage {
    fn drop(&mut self) {
        self.stop();
    }
}
