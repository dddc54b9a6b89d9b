//! Modules in OCI registries: `wedge push`, `wedge pull`, and `oci://`
//! sources, which are pulled into the store (beside the AOT cache) and
//! replaced by the module's file before anything loads them.

use anyhow::{Context, Result};
use std::path::PathBuf;
use wedge_manifest::App;
use wedge_oci::{Options, Pulled, Store};

/// How to reach registries, for every command that may pull or push.
#[derive(clap::Args, Clone, Default)]
pub struct RegistryArgs {
    /// A registry (HOST or HOST:PORT) spoken to over plain HTTP instead of
    /// HTTPS; repeat for more
    #[arg(
        long = "insecure-registry",
        value_name = "HOST",
        env = "WEDGE_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    pub insecure: Vec<String>,
    /// Registry user name, with the password in WEDGE_REGISTRY_PASSWORD;
    /// without it, the Docker config's credentials
    /// ($DOCKER_CONFIG/config.json or ~/.docker/config.json), else none
    #[arg(long, value_name = "USER", env = "WEDGE_REGISTRY_USERNAME")]
    pub registry_username: Option<String>,
    /// Where pulled modules are kept, by digest [default: CACHE_DIR/oci]
    #[arg(long, value_name = "DIR", env = "WEDGE_OCI_STORE")]
    pub oci_store: Option<PathBuf>,
}

impl RegistryArgs {
    pub fn options(&self) -> Result<Options> {
        let credentials = match &self.registry_username {
            None => None,
            Some(user) => {
                let password = std::env::var("WEDGE_REGISTRY_PASSWORD")
                    .context("--registry-username needs the password in WEDGE_REGISTRY_PASSWORD")?;
                Some((user.clone(), password))
            }
        };
        Ok(Options {
            insecure: self.insecure.clone(),
            credentials,
        })
    }

    /// The store: `--oci-store`, else `oci/` in the cache directory.
    pub fn store(&self, cache_dir: Option<&std::path::Path>) -> Store {
        let root = self.oci_store.clone().unwrap_or_else(|| {
            cache_dir
                .map(std::path::Path::to_path_buf)
                .or_else(wedge_runtime::cache::default_dir)
                .unwrap_or_else(|| std::env::temp_dir().join("wedge"))
                .join("oci")
        });
        Store::new(root)
    }
}

/// Runs `f` on a runtime of its own, on a thread of its own, so that it can
/// be called from synchronous code inside or outside a runtime.
fn block_on<F>(f: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the registry client")
                .block_on(f)
        })
        .join()
        .expect("the registry client panicked")
    })
}

/// Pulls `reference` (blocking).
pub fn pull(reference: &str, args: &RegistryArgs, store: &Store) -> Result<Pulled> {
    let options = args.options()?;
    Ok(block_on(wedge_oci::pull(reference, store, &options))?)
}

/// Replaces every `oci://` source of `app` by the pulled module's file.
pub fn resolve(app: &mut App, args: &RegistryArgs, store: &Store) -> Result<()> {
    for f in &mut app.functions {
        let sources = std::iter::once(&mut f.source)
            .chain(f.traffic.canaries.iter_mut().map(|c| &mut c.source));
        for source in sources {
            let Some(reference) = wedge_manifest::oci_reference(source).map(str::to_string) else {
                continue;
            };
            let pulled = pull(&reference, args, store)
                .with_context(|| format!("function `{}`: source {reference}", f.name))?;
            report(&f.name, &reference, &pulled);
            *source = pulled.path;
        }
    }
    Ok(())
}

/// Logs what a pull did.
fn report(function: &str, reference: &str, pulled: &Pulled) {
    let (level, message) = match &pulled.stale {
        Some(e) => (
            "warn",
            format!(
                "{reference}: the registry did not answer ({e}); serving {} as it named last time",
                pulled.manifest
            ),
        ),
        None if pulled.downloaded => ("info", format!("pulled {reference} ({})", pulled.manifest)),
        None => (
            "info",
            format!("{reference} ({}) already pulled", pulled.manifest),
        ),
    };
    wedge_observe::log::line(level, "-", function, &message);
}

/// `wedge push FILE REFERENCE`
#[derive(clap::Args)]
pub struct PushArgs {
    /// The module or component to push
    file: PathBuf,
    /// Where to: [oci://]REGISTRY/REPOSITORY:TAG
    reference: String,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn push(args: PushArgs) -> Result<i32> {
    let wasm =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let options = args.registry.options()?;
    let pushed = block_on(wedge_oci::push(wasm, &args.reference, &options))?;
    let bare = args
        .reference
        .strip_prefix("oci://")
        .unwrap_or(&args.reference);
    let repository = bare.rsplit_once(':').filter(|(_, tag)| !tag.contains('/'));
    let repository = repository.map_or(bare, |(repo, _)| repo);
    println!("pushed {} ({} bytes)", args.reference, pushed.size);
    println!("  manifest {}", pushed.manifest);
    println!("  module   {}", pushed.layer);
    println!("  by digest: oci://{repository}@{}", pushed.manifest);
    Ok(0)
}

/// `wedge pull REFERENCE`
#[derive(clap::Args)]
pub struct PullArgs {
    /// What to pull: [oci://]REGISTRY/REPOSITORY:TAG or …@sha256:DIGEST
    reference: String,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn pull_cmd(args: PullArgs, cache_dir: Option<&std::path::Path>) -> Result<i32> {
    let store = args.registry.store(cache_dir);
    let pulled = pull(&args.reference, &args.registry, &store)?;
    if let Some(e) = &pulled.stale {
        eprintln!("wedge: the registry did not answer ({e}); using what the tag named last time");
    }
    println!("{}", pulled.path.display());
    println!("  manifest {}", pulled.manifest);
    println!("  module   {}", pulled.layer);
    println!(
        "  {}",
        if pulled.downloaded {
            "downloaded"
        } else {
            "already in the store"
        }
    );
    Ok(0)
}
