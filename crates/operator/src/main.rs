//! The `wedge-operator` binary: `crd` prints the CustomResourceDefinition;
//! `run` reconciles `WasmFunction`s while it holds the leader Lease.

use clap::{Parser, Subcommand};
use kube::CustomResourceExt;
use std::sync::Arc;
use std::time::Duration;
use wedge_operator::controller::{self, Ctx};
use wedge_operator::crd::WasmFunction;
use wedge_operator::desired::Settings;
use wedge_operator::lease::Elector;

#[derive(Parser)]
#[command(
    name = "wedge-operator",
    version,
    about = "Runs WasmFunction resources with wedge serve"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the WasmFunction CustomResourceDefinition as YAML
    Crd,
    /// Reconcile WasmFunctions in the cluster of the kubeconfig or the pod
    Run {
        /// The wedge image pods run unless a function names its own
        #[arg(
            long,
            env = "WEDGE_IMAGE",
            default_value = "ghcr.io/wedge-dev/wedge:latest"
        )]
        image: String,
        /// Key the pods' admin tokens are derived from; with it, traffic
        /// weights go to running pods through wedge's admin API at once
        #[arg(long, env = "WEDGE_ADMIN_KEY", hide_env_values = true)]
        admin_key: Option<String>,
        /// Namespace of the leader Lease [default: the pod's, else default]
        #[arg(long, env = "POD_NAMESPACE")]
        lease_namespace: Option<String>,
        /// This replica's name in the Lease [default: the pod's name]
        #[arg(long, env = "POD_NAME")]
        identity: Option<String>,
        /// Reconcile without leader election (one replica only)
        #[arg(long)]
        no_leader_election: bool,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", wedge_operator::crd_yaml());
            Ok(())
        }
        Command::Run {
            image,
            admin_key,
            lease_namespace,
            identity,
            no_leader_election,
        } => tokio::runtime::Runtime::new()?.block_on(run(
            Settings { image, admin_key },
            lease_namespace,
            identity,
            no_leader_election,
        )),
    }
}

async fn run(
    settings: Settings,
    lease_namespace: Option<String>,
    identity: Option<String>,
    no_leader_election: bool,
) -> anyhow::Result<()> {
    let _ = WasmFunction::crd();
    let client = kube::Client::try_default().await?;
    let identity = identity.unwrap_or_else(|| format!("wedge-operator-{}", std::process::id()));
    let ctx = Arc::new(Ctx::new(client.clone(), settings, Some(identity.clone())));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let elector = (!no_leader_election).then(|| Elector {
        api: kube::Api::namespaced(
            client.clone(),
            lease_namespace.as_deref().unwrap_or("default"),
        ),
        name: "wedge-operator".into(),
        identity: identity.clone(),
        duration_secs: 15,
    });
    if let Some(e) = &elector {
        eprintln!("wedge-operator: {identity} waiting for the leader lease");
        while !e.try_acquire().await.unwrap_or(false) {
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        eprintln!("wedge-operator: {identity} leads");
    }
    let shutdown = async move {
        let _ = stop_rx.await;
    };
    let controller = tokio::spawn(controller::run(ctx, shutdown));
    let mut renew = tokio::time::interval(Duration::from_secs(5));
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm() => break,
            _ = renew.tick() => {
                let Some(e) = &elector else { continue };
                match e.try_acquire().await {
                    Ok(true) => last_renewed = tokio::time::Instant::now(),
                    Ok(false) => {
                        eprintln!("wedge-operator: the lease went to another replica; stopping");
                        let _ = stop_tx.send(());
                        let _ = controller.await;
                        std::process::exit(1);
                    }
                    Err(err) if last_renewed.elapsed() > Duration::from_secs(10) => {
                        eprintln!("wedge-operator: cannot renew the lease ({err}); stopping");
                        let _ = stop_tx.send(());
                        let _ = controller.await;
                        std::process::exit(1);
                    }
                    Err(_) => {}
                }
            }
        }
    }
    let _ = stop_tx.send(());
    let _ = controller.await;
    Ok(())
}

async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
