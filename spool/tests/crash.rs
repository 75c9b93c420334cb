//! Crash test: this test binary re-executes itself in "child writer mode"
//! (selected by an environment variable), the parent SIGKILLs the child at
//! random moments, then checks what survived.
//!
//! `VIGIL_SOAK=1` runs 500 trials instead of 60.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rand::{rngs::StdRng, Rng, SeedableRng};
use vigil_spool::{SpoolConfig, SpoolError, SpoolReader, SpoolWriter};

const CHILD_PATH: &str = "VIGIL_SPOOL_CRASH_CHILD";
const CHILD_START: &str = "VIGIL_SPOOL_CRASH_START";

fn child_cfg() -> SpoolConfig {
    SpoolConfig {
        capacity_bytes: 256 * 1024,
        block_target_bytes: 8 * 1024,
        max_batch_age: Duration::from_millis(2),
        zstd_level: 1,
    }
}

/// Child writer mode. A no-op when the environment variable is absent (the
/// normal test run), so it passes trivially there.
#[test]
fn crash_child_writer() {
    let Some(path) = std::env::var_os(CHILD_PATH) else {
        return;
    };
    let mut counter: u64 = std::env::var(CHILD_START)
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("start counter");
    let (mut w, _) = SpoolWriter::open_or_create(Path::new(&path), child_cfg()).expect("open");
    let mut out = std::io::stdout();
    let mut buf = Vec::new();
    let mut blocks = w.stats().blocks_written;
    loop {
        common::make_record(counter, &mut buf);
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        w.append(ts, &[counter, counter % 7], &buf).expect("append");
        if counter.is_multiple_of(64) {
            w.seal_if_due().expect("seal_if_due");
        }
        if counter.is_multiple_of(997) {
            w.flush().expect("flush");
        }
        let st = w.stats();
        if st.blocks_written != blocks {
            blocks = st.blocks_written;
            // Everything up to this counter is sealed.
            let sealed = counter - st.pending_records;
            writeln!(out, "sealed {sealed}").expect("stdout");
            out.flush().expect("stdout");
        }
        counter += 1;
    }
}

#[test]
fn sigkill_at_random_moments() {
    let trials = if common::soak() { 500 } else { 60 };
    let mut rng = StdRng::seed_from_u64(0xC0FFEE);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.spool");
    let exe = std::env::current_exe().expect("current_exe");
    let mut next_counter = 1u64;
    let mut max_reported = 0u64;
    let mut kills_with_data = 0;
    for trial in 0..trials {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_PATH, &path)
            .env(CHILD_START, next_counter.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..60)));
        child.kill().expect("SIGKILL child"); // std sends SIGKILL on unix
        let status = child.wait().expect("wait child");
        assert!(!status.success(), "child must have been killed");
        let mut text = String::new();
        child
            .stdout
            .take()
            .expect("piped stdout")
            .read_to_string(&mut text)
            .expect("read child stdout");
        // Only complete lines count; the last one may be cut by the kill.
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        let reported = complete
            .lines()
            .filter_map(|l| l.strip_prefix("sealed ")?.parse::<u64>().ok())
            .max();
        if let Some(r) = reported {
            max_reported = max_reported.max(r);
        }

        let r = match SpoolReader::open(&path) {
            Ok(r) => r,
            // Killed before the file was ever initialized.
            Err(SpoolError::NotASpool { .. }) | Err(SpoolError::Io { .. }) if max_reported == 0 => {
                continue
            }
            Err(e) => panic!("trial {trial}: reopen failed: {e}"),
        };
        let info = r.info();
        assert_eq!(
            info.corrupt_blocks, 0,
            "trial {trial}: SIGKILL must not tear blocks"
        );
        let mut last_seq = 0;
        let mut last_counter = 0u64;
        for b in r.blocks() {
            assert!(
                b.seq > last_seq,
                "trial {trial}: sequences strictly increase"
            );
            last_seq = b.seq;
            let block = r
                .read_block(b)
                .unwrap_or_else(|e| panic!("trial {trial}: {e}"));
            for rec in block.records() {
                let rec = rec.expect("valid block yields valid records");
                let c = common::check_record(rec.data).expect("intact record");
                assert_eq!(rec.keys.to_vec(), vec![c, c % 7]);
                assert!(
                    c > last_counter,
                    "trial {trial}: counters strictly increase"
                );
                last_counter = c;
            }
        }
        assert!(
            max_reported <= last_counter,
            "trial {trial}: child reported {max_reported} sealed, only {last_counter} recovered"
        );
        if reported.is_some() {
            kills_with_data += 1;
        }
        next_counter = last_counter + 1;
    }
    eprintln!(
        "{trials} trials, {kills_with_data} with sealed data, last counter {}, max reported {max_reported}",
        next_counter - 1
    );
    assert!(
        kills_with_data >= trials / 2,
        "children mostly got to write ({kills_with_data})"
    );
    let (_w, rep) = SpoolWriter::open_or_create(&path, child_cfg()).expect("final open");
    assert_eq!((rep.corrupt_blocks, rep.stale_blocks), (0, 0));
    assert!(rep.valid_blocks > 0);
}
