//! `shipway image`: the local image store, used directly in the data directory (no server needed).

use std::path::Path;

use shipway_runtime::images::{ImageError, ImageStore};

use crate::Failure;
use crate::cli::{ImageCommand, OutputFormat};
use crate::output;

fn failure(e: ImageError) -> Failure {
    match e {
        ImageError::BadReference(_) => Failure::Usage(e.to_string()),
        _ => Failure::Failed(e.to_string()),
    }
}

pub fn run(data_dir: &Path, command: ImageCommand) -> Result<(), Failure> {
    let store = ImageStore::new(data_dir);
    match command {
        ImageCommand::Import {
            reference,
            dir,
            entrypoint,
            env,
        } => {
            let env = env
                .iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                    _ => Err(Failure::Usage(format!("--env {kv:?} is not KEY=VALUE"))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let digest = store
                .import(&reference, &dir, &entrypoint, &env)
                .map_err(failure)?;
            let reference =
                shipway_runtime::images::normalize_reference(&reference).map_err(failure)?;
            outln!("{reference} imported ({digest})");
        }
        ImageCommand::List { output: format } => {
            let images = store.list().map_err(failure)?;
            match format {
                Some(OutputFormat::Json) => outln!(
                    "{}",
                    serde_json::to_string_pretty(&images).unwrap_or_default()
                ),
                Some(OutputFormat::Yaml) => out!(
                    "{}",
                    output::to_yaml(&serde_json::to_value(&images).unwrap_or_default())
                ),
                Some(OutputFormat::Name) => images.iter().for_each(|i| outln!("{}", i.reference)),
                _ if images.is_empty() => eprintln!(
                    "No images; add one with `shipway image import NAME:TAG DIR --entrypoint CMD`"
                ),
                _ => {
                    let mut rows = vec![vec!["IMAGE".to_string(), "DIGEST".into(), "SIZE".into()]];
                    for i in &images {
                        let short = i
                            .digest
                            .trim_start_matches("sha256:")
                            .chars()
                            .take(12)
                            .collect::<String>();
                        rows.push(vec![i.reference.clone(), short, human_size(i.size)]);
                    }
                    out!("{}", output::align(&rows));
                }
            }
        }
        ImageCommand::Rm { references } => {
            for r in references {
                store.remove(&r).map_err(failure)?;
                outln!(
                    "{} removed",
                    shipway_runtime::images::normalize_reference(&r).unwrap_or(r)
                );
            }
        }
    }
    Ok(())
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1}GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1}MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1}KiB", b as f64 / 1024.0),
        b => format!("{b}B"),
    }
}
