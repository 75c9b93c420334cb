//! `vigil synthetic`: seeded realistic macOS traffic as ECS NDJSON.

use std::process::ExitCode;

use anyhow::Result;

pub fn run(a: crate::cli::SyntheticArgs) -> Result<ExitCode> {
    use std::io::Write;
    let gen =
        crate::sources::synthetic::Synthetic::new(crate::sources::synthetic::SyntheticConfig {
            seed: a.seed,
            plant_every: a.plant_every,
            plant: a.plant,
            host_id: a
                .host_id
                .unwrap_or_else(|| crate::sources::synthetic::SyntheticConfig::default().host_id),
            ..Default::default()
        });
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for e in gen.take(a.events as usize) {
        if let Err(e) = writeln!(out, "{}", dsl::ecs::to_ecs_json(&e)) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                break;
            }
            return Err(e.into());
        }
    }
    out.flush().ok();
    Ok(ExitCode::SUCCESS)
}
