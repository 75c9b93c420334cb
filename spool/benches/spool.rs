//! Append and scan throughput with realistic, repetitive ~300-byte records.

use std::ops::ControlFlow;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use vigil_spool::{SpoolConfig, SpoolReader, SpoolWriter, TimeRange};

const POOL: usize = 20_000;

/// Event-like records: a few hundred distinct shapes with varying numbers,
/// about 300 bytes each, like serialized process/file/network events.
fn records() -> Vec<(i64, [u64; 2], Vec<u8>)> {
    let exes = [
        "/usr/bin/bash",
        "/usr/sbin/sshd",
        "/usr/lib/systemd/systemd-journald",
        "/opt/vendor/agent/bin/updater",
        "/usr/bin/python3.12",
        "/Applications/Safari.app/Contents/MacOS/Safari",
    ];
    let kinds = ["exec", "open", "connect", "exit", "rename", "mmap"];
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut out = Vec::with_capacity(POOL);
    let mut ts = 1_700_000_000_000_000_000i64;
    for i in 0..POOL {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ts += (x % 50_000) as i64;
        let pid = 1000 + (x % 300);
        let exe = exes[(x >> 8) as usize % exes.len()];
        let kind = kinds[(x >> 16) as usize % kinds.len()];
        let data = format!(
            "{{\"kind\":\"{kind}\",\"pid\":{pid},\"ppid\":{},\"uid\":{},\"exe\":\"{exe}\",\
             \"args\":[\"--config\",\"/etc/{kind}/{}.conf\",\"-v\"],\"path\":\"/home/user/project/src/file_{}.rs\",\
             \"sha256\":\"{:016x}{:016x}\",\"seq\":{i},\"flags\":{},\"host\":\"build-runner-07.corp.example\",\
             \"session\":{}}}",
            pid / 3,
            x % 3 * 500,
            x % 17,
            x % 1000,
            x.rotate_left(7),
            x.rotate_left(29),
            x % 8,
            x % 40
        );
        out.push((ts, [pid, (x >> 20) % 5000], data.into_bytes()));
    }
    out
}

/// CPU time consumed by the calling thread, so the printed per-CPU-second
/// rates do not depend on other load on the machine.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn per_cpu_second(label: &str, n: u64, f: impl FnOnce()) {
    let t0 = thread_cpu();
    f();
    let cpu = (thread_cpu() - t0).as_secs_f64();
    eprintln!(
        "{label}: {n} records in {cpu:.3} CPU-s = {:.2} M records per CPU-second",
        n as f64 / cpu / 1e6
    );
}

fn bench(c: &mut Criterion) {
    let pool = records();
    let avg = pool.iter().map(|r| r.2.len()).sum::<usize>() / pool.len();
    eprintln!("average record size: {avg} bytes");
    let dir = tempfile::tempdir().expect("tempdir");

    let mut g = c.benchmark_group("spool");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));

    // Append: batches of POOL records into a 32 MiB ring, pre-filled so the
    // measurement is the steady state (wrapping, overwriting).
    let path = dir.path().join("append.spool");
    let cfg = SpoolConfig {
        capacity_bytes: 32 << 20,
        ..SpoolConfig::default()
    };
    let (mut w, _) = SpoolWriter::open_or_create(&path, cfg).expect("create");
    for _ in 0..40 {
        for (ts, keys, data) in &pool {
            w.append(*ts, keys, data).expect("append");
        }
    }
    per_cpu_second("append (cpu)", 50 * POOL as u64, || {
        for _ in 0..50 {
            for (ts, keys, data) in &pool {
                w.append(*ts, keys, data).expect("append");
            }
        }
    });
    g.throughput(Throughput::Elements(POOL as u64));
    g.bench_function(BenchmarkId::new("append", format!("{avg}B")), |b| {
        b.iter(|| {
            for (ts, keys, data) in &pool {
                w.append(*ts, keys, data).expect("append");
            }
        })
    });
    w.flush().expect("flush");
    let st = w.stats();
    eprintln!(
        "append: {} blocks, ratio {:.2}",
        st.blocks_written,
        st.raw_bytes as f64 / st.compressed_bytes.max(1) as f64
    );
    drop(w);

    // Scan: 1M records.
    let path = dir.path().join("scan.spool");
    let cfg = SpoolConfig {
        capacity_bytes: 256 << 20,
        ..SpoolConfig::default()
    };
    let (mut w, _) = SpoolWriter::open_or_create(&path, cfg).expect("create");
    let n = 1_000_000usize;
    for i in 0..n {
        let (ts, keys, data) = &pool[i % POOL];
        w.append(*ts + (i / POOL) as i64 * 1_000_000_000_000, keys, data)
            .expect("append");
    }
    drop(w);
    let r = SpoolReader::open(&path).expect("open");
    assert_eq!(r.info().records, n as u64);
    per_cpu_second("scan (cpu)", 3 * n as u64, || {
        for _ in 0..3 {
            let rep = r
                .scan(TimeRange::all(), None, |rec| {
                    black_box(rec.data);
                    ControlFlow::Continue(())
                })
                .expect("scan");
            assert_eq!(rep.records, n as u64);
        }
    });
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("scan_all", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            let rep = r
                .scan(TimeRange::all(), None, |rec| {
                    bytes += rec.data.len();
                    ControlFlow::Continue(())
                })
                .expect("scan");
            assert_eq!(rep.records, n as u64);
            black_box(bytes)
        })
    });
    // Key lookup: the bloom filter rarely skips 1 MiB blocks of such data;
    // this measures the filtered scan cost.
    g.bench_function("scan_key", |b| {
        b.iter(|| {
            let rep = r
                .scan(TimeRange::all(), Some(1042), |_| ControlFlow::Continue(()))
                .expect("scan");
            black_box(rep.records)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
