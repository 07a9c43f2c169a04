//! Unit tests of the per-file transfer audit: SFTP and rcp conversations built by hand, fed
//! in chunks of every size, and random or cut input that must never panic.

use rand::{RngExt, SeedableRng, rngs::StdRng};
use sha2::{Digest, Sha256};

use super::*;

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Builds SFTP packets.
struct Pkt(Vec<u8>);

impl Pkt {
    fn new(kind: u8) -> Pkt {
        Pkt(vec![kind])
    }
    fn u32(mut self, v: u32) -> Pkt {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Pkt {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn s(self, v: &[u8]) -> Pkt {
        let mut p = self.u32(v.len() as u32);
        p.0.extend_from_slice(v);
        p
    }
    fn done(self) -> Vec<u8> {
        let mut out = (self.0.len() as u32).to_be_bytes().to_vec();
        out.extend(self.0);
        out
    }
}

const OK: u32 = 0;
const EOF: u32 = 1;

fn status(id: u32, code: u32) -> Vec<u8> {
    Pkt::new(101).u32(id).u32(code).s(b"msg").s(b"").done()
}

/// One SFTP conversation: client packets and the server's, in the order they happen.
#[derive(Default)]
struct Talk {
    steps: Vec<(bool, Vec<u8>)>,
}

impl Talk {
    fn start() -> Talk {
        let mut t = Talk::default();
        t.up(Pkt::new(1).u32(3).done());
        t.down(Pkt::new(2).u32(3).done());
        t
    }
    fn up(&mut self, p: Vec<u8>) {
        self.steps.push((true, p));
    }
    fn down(&mut self, p: Vec<u8>) {
        self.steps.push((false, p));
    }
    /// Uploads `data` to `path` in `chunk`-byte writes, in order.
    fn put(&mut self, id: &mut u32, path: &str, data: &[u8], chunk: usize) {
        let h = format!("h{id}");
        self.up(Pkt::new(3)
            .u32(*id)
            .s(path.as_bytes())
            .u32(0x1a)
            .u32(0)
            .done());
        self.down(Pkt::new(102).u32(*id).s(h.as_bytes()).done());
        *id += 1;
        for (i, part) in data.chunks(chunk).enumerate() {
            self.up(Pkt::new(6)
                .u32(*id)
                .s(h.as_bytes())
                .u64((i * chunk) as u64)
                .s(part)
                .done());
            self.down(status(*id, OK));
            *id += 1;
        }
        self.up(Pkt::new(4).u32(*id).s(h.as_bytes()).done());
        self.down(status(*id, OK));
        *id += 1;
    }
    /// Downloads `data` from `path`, reads pipelined `chunk` bytes at a time, to EOF.
    fn get(&mut self, id: &mut u32, path: &str, data: &[u8], chunk: usize) {
        let h = format!("g{id}");
        self.up(Pkt::new(3)
            .u32(*id)
            .s(path.as_bytes())
            .u32(0x01)
            .u32(0)
            .done());
        self.down(Pkt::new(102).u32(*id).s(h.as_bytes()).done());
        *id += 1;
        let parts: Vec<&[u8]> = data.chunks(chunk).collect();
        let first = *id;
        for i in 0..=parts.len() {
            self.up(Pkt::new(5)
                .u32(*id)
                .s(h.as_bytes())
                .u64((i * chunk) as u64)
                .u32(chunk as u32)
                .done());
            *id += 1;
        }
        for (i, part) in parts.iter().enumerate() {
            self.down(Pkt::new(103).u32(first + i as u32).s(part).done());
        }
        self.down(status(first + parts.len() as u32, EOF));
        self.up(Pkt::new(4).u32(*id).s(h.as_bytes()).done());
        self.down(status(*id, OK));
        *id += 1;
    }
    /// Feeds everything to `audit`, each packet cut into `cut`-byte pieces.
    fn run(&self, audit: &mut FileAudit, cut: usize) -> Result<Vec<FileRecord>, Malformed> {
        let mut out = Vec::new();
        for (up, bytes) in &self.steps {
            for piece in bytes.chunks(cut) {
                if *up {
                    audit.input(piece, &mut out)?;
                } else {
                    audit.output(piece, &mut out)?;
                }
            }
        }
        audit.finish(&mut out);
        Ok(out)
    }
    /// All client bytes, and all server bytes (for noise: a real client cannot use a handle
    /// before the reply naming it went through the relay).
    fn streams(&self) -> (Vec<u8>, Vec<u8>) {
        let (mut up, mut down) = (Vec::new(), Vec::new());
        for (u, b) in &self.steps {
            if *u { up.extend(b) } else { down.extend(b) }
        }
        (up, down)
    }
}

fn sftp() -> FileAudit {
    FileAudit::for_channel(&ChannelKind::Subsystem {
        name: "sftp".into(),
    })
    .expect("sftp")
}

fn transfers(records: &[FileRecord]) -> Vec<&FileRecord> {
    records.iter().filter(|r| r.is_transfer()).collect()
}

#[test]
fn sftp_put_get_rename_remove_are_recorded_per_file_whatever_the_chunking() {
    let big: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut t = Talk::start();
    let mut id = 1;
    t.put(&mut id, "/up/big.bin", &big, 32768);
    t.put(&mut id, "/up/empty", b"", 32768);
    t.get(&mut id, "/down/big.bin", &big, 30000);
    t.up(Pkt::new(200)
        .u32(id)
        .s(b"posix-rename@openssh.com")
        .s(b"/up/big.bin")
        .s(b"/up/moved.bin")
        .done());
    t.down(status(id, OK));
    id += 1;
    t.up(Pkt::new(13).u32(id).s(b"/up/nothere").done());
    t.down(
        Pkt::new(101)
            .u32(id)
            .u32(2)
            .s(b"No such file")
            .s(b"")
            .done(),
    );
    id += 1;
    t.up(Pkt::new(14).u32(id).s(b"/up/d").u32(4).u32(0o755).done());
    t.down(status(id, OK));
    id += 1;
    t.up(Pkt::new(15).u32(id).s(b"/up/d").done());
    t.down(status(id, OK));
    id += 1;
    t.up(Pkt::new(9)
        .u32(id)
        .s(b"/up/moved.bin")
        .u32(4)
        .u32(0o600)
        .done());
    t.down(status(id, OK));
    for cut in [1, 2, 3, 7, 100, 4096, usize::MAX] {
        let records = t.run(&mut sftp(), cut).expect("parses");
        let files = transfers(&records);
        assert_eq!(files.len(), 3, "cut {cut}: {records:#?}");
        assert_eq!(files[0].path.as_deref(), Some("/up/big.bin"));
        assert_eq!(files[0].direction, Some(Direction::Upload));
        assert_eq!((files[0].size, files[0].whole), (Some(100_000), Some(true)));
        assert_eq!(files[0].sha256.as_deref(), Some(sha(&big).as_str()));
        assert_eq!(
            files[1].sha256.as_deref(),
            Some(sha(b"").as_str()),
            "empty file: {:#?}",
            files[1]
        );
        assert_eq!(files[2].direction, Some(Direction::Download));
        assert_eq!(files[2].sha256.as_deref(), Some(sha(&big).as_str()));
        let ops: Vec<(&str, Option<&str>, &str)> = records
            .iter()
            .filter(|r| !r.is_transfer() && r.op != "open")
            .map(|r| (r.op.as_str(), r.path.as_deref(), r.status.as_str()))
            .collect();
        assert_eq!(
            ops,
            [
                ("rename", Some("/up/big.bin"), "ok"),
                (
                    "remove",
                    Some("/up/nothere"),
                    "no such file (2): No such file"
                ),
                ("mkdir", Some("/up/d"), "ok"),
                ("rmdir", Some("/up/d"), "ok"),
                ("setstat", Some("/up/moved.bin"), "ok"),
            ]
        );
        let rename = records.iter().find(|r| r.op == "rename").expect("rename");
        assert_eq!(rename.to.as_deref(), Some("/up/moved.bin"));
        assert_eq!(records.iter().filter(|r| r.op == "open").count(), 3);
    }
}

#[test]
fn a_partial_or_out_of_order_transfer_is_reported_with_its_ranges_and_no_digest() {
    let mut t = Talk::start();
    t.up(Pkt::new(3).u32(1).s(b"/f").u32(0x1a).u32(0).done());
    t.down(Pkt::new(102).u32(1).s(b"H").done());
    t.up(Pkt::new(6).u32(2).s(b"H").u64(0).s(b"abc").done());
    t.up(Pkt::new(6).u32(3).s(b"H").u64(100).s(b"def").done());
    t.up(Pkt::new(6).u32(4).s(b"H").u64(200).s(b"ghi").done());
    t.up(Pkt::new(4).u32(5).s(b"H").done());
    t.down(status(5, OK));
    // A download read from offset 10 only, never to the end.
    t.up(Pkt::new(3).u32(6).s(b"/g").u32(0x01).u32(0).done());
    t.down(Pkt::new(102).u32(6).s(b"G").done());
    t.up(Pkt::new(5).u32(7).s(b"G").u64(10).u32(5).done());
    t.down(Pkt::new(103).u32(7).s(b"12345").done());
    t.up(Pkt::new(4).u32(8).s(b"G").done());
    t.down(status(8, OK));
    // A download read in order from 0 but never to its end.
    t.up(Pkt::new(3).u32(9).s(b"/h").u32(0x01).u32(0).done());
    t.down(Pkt::new(102).u32(9).s(b"I").done());
    t.up(Pkt::new(5).u32(10).s(b"I").u64(0).u32(5).done());
    t.down(Pkt::new(103).u32(10).s(b"12345").done());
    // ... and left open when the channel ends.
    let records = t.run(&mut sftp(), 5).expect("parses");
    let files = transfers(&records);
    assert_eq!(files.len(), 3, "{records:#?}");
    assert_eq!(
        (files[0].whole, files[0].ranges, files[0].size),
        (Some(false), Some(3), Some(9))
    );
    assert_eq!(files[0].range, Some([0, 203]));
    assert_eq!(files[0].sha256, None);
    assert_eq!(
        (files[1].whole, files[1].range),
        (Some(false), Some([10, 15]))
    );
    assert_eq!(files[1].sha256, None);
    assert_eq!(files[2].path.as_deref(), Some("/h"));
    assert_eq!(files[2].whole, Some(false));
    assert!(
        files[2].status.contains("not closed"),
        "{}",
        files[2].status
    );
}

#[test]
fn an_upload_cut_to_its_size_after_writing_is_whole() {
    // OpenSSH's scp in SFTP mode: open write,create (no truncate), write, fsetstat size.
    let mut t = Talk::start();
    t.up(Pkt::new(3).u32(1).s(b"/f").u32(0x0a).u32(0).done());
    t.down(Pkt::new(102).u32(1).s(b"H").done());
    t.up(Pkt::new(6).u32(2).s(b"H").u64(0).s(b"abc").done());
    t.down(status(2, OK));
    t.up(Pkt::new(10).u32(3).s(b"H").u32(1).u64(3).done());
    t.down(status(3, OK));
    t.up(Pkt::new(4).u32(4).s(b"H").done());
    t.down(status(4, OK));
    let records = t.run(&mut sftp(), 3).expect("parses");
    let file = transfers(&records)[0];
    assert_eq!(
        file.sha256.as_deref(),
        Some(sha(b"abc").as_str()),
        "{records:#?}"
    );
    let fsetstat = records
        .iter()
        .find(|r| r.op == "fsetstat")
        .expect("fsetstat");
    assert_eq!(
        (fsetstat.path.as_deref(), fsetstat.detail.as_deref()),
        (Some("/f"), Some("size=3"))
    );
    // Without the truncation the old file's tail may remain: not whole.
    let mut t = Talk::start();
    t.up(Pkt::new(3).u32(1).s(b"/f").u32(0x0a).u32(0).done());
    t.down(Pkt::new(102).u32(1).s(b"H").done());
    t.up(Pkt::new(6).u32(2).s(b"H").u64(0).s(b"abc").done());
    t.down(status(2, OK));
    t.up(Pkt::new(4).u32(4).s(b"H").done());
    t.down(status(4, OK));
    let records = t.run(&mut sftp(), 3).expect("parses");
    assert_eq!(transfers(&records)[0].whole, Some(false));
}

#[test]
fn a_failed_write_makes_the_file_partial() {
    let mut t = Talk::start();
    t.up(Pkt::new(3).u32(1).s(b"/f").u32(0x1a).u32(0).done());
    t.down(Pkt::new(102).u32(1).s(b"H").done());
    t.up(Pkt::new(6).u32(2).s(b"H").u64(0).s(b"abc").done());
    t.down(Pkt::new(101).u32(2).u32(4).s(b"disk full").s(b"").done());
    t.up(Pkt::new(4).u32(3).s(b"H").done());
    t.down(status(3, OK));
    let records = t.run(&mut sftp(), 64).expect("parses");
    assert_eq!(transfers(&records)[0].whole, Some(false));
}

#[test]
fn oversized_packets_and_broken_fields_are_malformed() {
    let mut a = sftp();
    let mut out = Vec::new();
    let huge = ((sftp::MAX_PACKET + 1) as u32).to_be_bytes();
    let err = a.input(&huge, &mut out).expect_err("too long");
    assert_eq!(err.side, "client");
    assert!(err.reason.contains("over the 262144-byte limit"), "{err}");
    assert_eq!(err.record().op, "malformed");
    assert!(
        err.record()
            .status
            .contains("malformed sftp from the client"),
        "{}",
        err.record().status
    );

    // An OPEN whose path runs past the packet.
    let mut a = sftp();
    let bad = Pkt::new(3).u32(1).u32(1000).done();
    let err = a.input(&bad, &mut out).expect_err("truncated");
    assert!(err.reason.contains("truncated path"), "{err}");

    // A reply before the version, and a version other than 3.
    assert!(sftp().output(&status(1, OK), &mut out).is_err());
    let v6 = Pkt::new(2).u32(6).done();
    assert!(
        sftp()
            .output(&v6, &mut out)
            .expect_err("v6")
            .reason
            .contains("version 6")
    );
    // An empty packet.
    assert!(sftp().input(&[0, 0, 0, 0], &mut out).is_err());
}

#[test]
fn open_files_and_outstanding_requests_are_bounded() {
    let mut a = sftp();
    let mut out = Vec::new();
    a.output(&Pkt::new(2).u32(3).done(), &mut out)
        .expect("version");
    let mut result = Ok(());
    for i in 0..=sftp::MAX_HANDLES as u32 {
        a.input(&Pkt::new(3).u32(i).s(b"/f").u32(1).u32(0).done(), &mut out)
            .expect("open");
        result = a.output(&Pkt::new(102).u32(i).s(&i.to_be_bytes()).done(), &mut out);
        if result.is_err() {
            break;
        }
    }
    assert!(
        result
            .expect_err("bounded")
            .reason
            .contains("files open at once")
    );

    let mut a = sftp();
    let mut result = Ok(());
    for i in 0..=sftp::MAX_PENDING as u32 {
        result = a.input(&Pkt::new(13).u32(i).s(b"/x").done(), &mut out);
        if result.is_err() {
            break;
        }
    }
    assert!(
        result
            .expect_err("bounded")
            .reason
            .contains("awaiting an answer")
    );
}

#[test]
fn reads_past_the_bound_make_the_file_partial_not_the_channel_end() {
    let data = vec![7u8; 10];
    let mut a = sftp();
    let mut out = Vec::new();
    a.output(&Pkt::new(2).u32(3).done(), &mut out)
        .expect("version");
    a.input(&Pkt::new(3).u32(0).s(b"/f").u32(1).u32(0).done(), &mut out)
        .expect("open");
    a.output(&Pkt::new(102).u32(0).s(b"H").done(), &mut out)
        .expect("handle");
    for i in 1..=(sftp::MAX_PENDING as u32 + 5) {
        a.input(
            &Pkt::new(5)
                .u32(i)
                .s(b"H")
                .u64(u64::from(i - 1) * 10)
                .u32(10)
                .done(),
            &mut out,
        )
        .expect("reads are never refused");
    }
    a.output(&Pkt::new(103).u32(1).s(&data).done(), &mut out)
        .expect("data");
    a.finish(&mut out);
    let file = transfers(&out)[0].clone();
    assert_eq!(file.whole, Some(false));
}

#[test]
fn random_and_cut_input_never_panics() {
    let mut rng = StdRng::seed_from_u64(12);
    let mut t = Talk::start();
    let mut id = 1;
    t.put(&mut id, "/a", &[1u8; 5000], 1000);
    t.get(&mut id, "/b", &[2u8; 5000], 1000);
    let (up, down) = t.streams();
    for round in 0..2000 {
        let mut kind = FileAudit::for_channel(&ChannelKind::Exec {
            command: if round % 2 == 0 {
                "scp -t /tmp".into()
            } else {
                "sftp-server".into()
            },
            pty: None,
        })
        .expect("audited");
        let mut out = Vec::new();
        // Real traffic with random bytes flipped, cut at random.
        let mut up = up.clone();
        let mut down = down.clone();
        for _ in 0..rng.random_range(0..4) {
            let at = rng.random_range(0..up.len());
            up[at] = rng.random();
            let at = rng.random_range(0..down.len());
            down[at] = rng.random();
        }
        up.truncate(rng.random_range(0..=up.len()));
        let noise: Vec<u8> = (0..rng.random_range(0..300))
            .map(|_| rng.random())
            .collect();
        for stream in [&up, &down, &noise] {
            let mut at = 0;
            while at < stream.len() {
                let n = rng.random_range(1..=64).min(stream.len() - at);
                let piece = &stream[at..at + n];
                let r = if rng.random_bool(0.5) {
                    kind.input(piece, &mut out)
                } else {
                    kind.output(piece, &mut out)
                };
                if r.is_err() {
                    break;
                }
                at += n;
            }
        }
        kind.finish(&mut out);
    }
}

fn scp(command: &str) -> FileAudit {
    FileAudit::for_channel(&ChannelKind::Exec {
        command: command.into(),
        pty: None,
    })
    .expect("scp audited")
}

#[test]
fn scp_upload_records_each_file_with_its_directory() {
    let a_txt = b"alpha\n".repeat(1000);
    let mut up = Vec::new();
    up.extend(b"T1700000000 0 1700000000 0\n");
    up.extend(b"D0755 0 tree\n");
    up.extend(format!("C0644 {} a.txt\n", a_txt.len()).as_bytes());
    up.extend(&a_txt);
    up.push(0);
    up.extend(b"D0700 0 sub\nC0600 0 empty\n\0E\nE\n");
    for cut in [1, 3, 512, usize::MAX] {
        let mut audit = scp("scp -r -t -- /srv/in");
        let mut out = Vec::new();
        audit.output(b"\0", &mut out).expect("ready");
        for piece in up.chunks(cut) {
            audit.input(piece, &mut out).expect("parses");
            audit.output(b"\0", &mut out).expect("acks");
        }
        audit.finish(&mut out);
        let paths: Vec<&str> = out.iter().filter_map(|r| r.path.as_deref()).collect();
        assert_eq!(
            paths,
            ["/srv/in/tree/a.txt", "/srv/in/tree/sub/empty"],
            "cut {cut}"
        );
        assert_eq!(out[0].sha256.as_deref(), Some(sha(&a_txt).as_str()));
        assert_eq!(
            (out[0].size, out[0].direction),
            (Some(6000), Some(Direction::Upload))
        );
        assert_eq!(out[1].sha256.as_deref(), Some(sha(b"").as_str()));
    }
    // A single file to a path without -d: the path is the target's.
    let mut audit = scp("scp -t /srv/name.txt");
    let mut out = Vec::new();
    audit
        .input(b"C0644 2 local.txt\nhi\0", &mut out)
        .expect("parses");
    assert_eq!(out[0].path.as_deref(), Some("/srv/name.txt"));
    let mut audit = scp("scp -d -t '/srv/with space'");
    let mut out = Vec::new();
    audit
        .input(b"C0644 2 local.txt\nhi\0", &mut out)
        .expect("parses");
    assert_eq!(out[0].path.as_deref(), Some("/srv/with space/local.txt"));
}

#[test]
fn scp_download_errors_and_cut_files() {
    let mut audit = scp("scp -f /etc/motd");
    let mut out = Vec::new();
    audit.input(b"\0", &mut out).expect("ack");
    audit
        .output(b"C0644 5 motd\nhello", &mut out)
        .expect("parses");
    audit
        .output(b"\x01scp: /etc/motd: read error\n", &mut out)
        .expect("status");
    audit
        .input(b"\x02scp: /home/x/motd: Permission denied\n", &mut out)
        .expect("sink");
    audit
        .output(b"C0644 10 other\nabc", &mut out)
        .expect("parses");
    audit.finish(&mut out);
    assert_eq!(out[0].path.as_deref(), Some("/etc/motd"));
    assert_eq!(out[0].whole, Some(false));
    assert!(out[0].status.contains("read error"), "{}", out[0].status);
    assert_eq!(out[1].op, "error");
    assert!(out[1].status.contains("Permission denied"));
    assert!(out[2].status.contains("3 of 10 bytes"), "{}", out[2].status);
    // Protocol errors.
    for bad in [
        &b"X1234\n"[..],
        b"C0644 notanumber x\n",
        b"C064 1 x\n",
        b"\n",
    ] {
        assert!(
            scp("scp -t /x").input(bad, &mut Vec::new()).is_err(),
            "{bad:?}"
        );
    }
    let long = vec![b'T'; rcp::MAX_LINE + 1];
    assert!(scp("scp -t /x").input(&long, &mut Vec::new()).is_err());
    // Not audited: scp without -t/-f, other programs.
    for command in ["scp a b", "scp -t -f x", "ls", "rsync --server ."] {
        assert!(
            FileAudit::for_channel(&ChannelKind::Exec {
                command: command.into(),
                pty: None
            })
            .is_none(),
            "{command}"
        );
    }
}
