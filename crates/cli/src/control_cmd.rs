//! `wedge ls`, `status`, `deploy`, `traffic`, `promote`, `rollback` and
//! `release`: a client of a running server's control API (`/v1/...` on its
//! admin listener; see docs/control.md).

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Where the server is and how to prove we may change it.
#[derive(clap::Args)]
pub struct Target {
    /// The server's admin listener
    #[arg(
        long,
        value_name = "URL",
        env = "WEDGE_ADMIN",
        default_value = "http://127.0.0.1:9464"
    )]
    admin: http::Uri,
    /// File holding the admin token [default: WEDGE_ADMIN_TOKEN, else the
    /// token `wedge serve` generated for that port]
    #[arg(long, value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Print the server's JSON instead of a table
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
pub enum ControlCommand {
    /// List the functions, their versions and traffic
    Ls(Target),
    /// Show one function: versions, traffic, stored versions, last change
    Status {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Deploy a module as a new version of a function
    Deploy {
        name: String,
        /// The module or component (.wasm), or oci://REGISTRY/REPOSITORY:TAG
        /// (or …@sha256:DIGEST), which the server pulls
        file: PathBuf,
        /// The new version's name, e.g. v1.2
        #[arg(long)]
        version: String,
        /// Percent of the traffic it gets at once (0: only through the
        /// version header; 100: promote it)
        #[arg(long, default_value = "0")]
        weight: f64,
        /// FILE is a path on the server's node, read there (not uploaded)
        #[arg(long)]
        on_node: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Start, show, pause, resume or abort a progressive rollout:
    /// wedge rollout NAME VERSION --steps 5,25,50,100 --interval 60s
    Rollout {
        name: String,
        /// The deployed version to roll out (omit to show the rollout)
        version: Option<String>,
        /// The version's share at each step, percent, ending at 100
        #[arg(long, value_delimiter = ',', default_value = "5,25,50,100")]
        steps: Vec<f64>,
        /// Time between analyses
        #[arg(long, default_value = "60s")]
        interval: String,
        /// Fail a step above this fraction of 5xx answers
        #[arg(long, default_value = "0.05")]
        max_error_ratio: f64,
        /// Fail a step when the version's P99 is over this multiple of stable's
        #[arg(long, default_value = "2")]
        max_latency_ratio: f64,
        /// Fewer requests than this in an interval decide nothing
        #[arg(long, default_value = "20")]
        min_requests: u64,
        /// On failure: `rollback` (all traffic to stable) or `freeze`
        #[arg(long, default_value = "rollback", value_parser = ["rollback", "freeze"])]
        on_failure: String,
        /// Prometheus to run --check queries against, e.g. http://127.0.0.1:9090
        #[arg(long, value_name = "URL")]
        prometheus: Option<String>,
        /// A PromQL check at every step: NAME<=MAX:QUERY or NAME>=MIN:QUERY;
        /// {{function}} and {{version}} are filled in (repeatable)
        #[arg(long = "check", value_name = "CHECK")]
        checks: Vec<String>,
        /// Pause the running rollout
        #[arg(long, conflicts_with_all = ["version", "resume", "abort"])]
        pause: bool,
        /// Resume a paused or frozen rollout
        #[arg(long, conflicts_with_all = ["version", "abort"])]
        resume: bool,
        /// Abort the rollout: all traffic to the stable version
        #[arg(long, conflicts_with = "version")]
        abort: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Forget a stored version that no traffic, rollback or rollout needs
    Delete {
        name: String,
        version: String,
        #[command(flatten)]
        target: Target,
    },
    /// Split a function's traffic: wedge traffic NAME v1=90 v2=10
    Traffic {
        name: String,
        /// VERSION=PERCENT, adding up to 100
        #[arg(required = true)]
        weights: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Send all of a function's traffic to one version
    Promote {
        name: String,
        version: String,
        #[command(flatten)]
        target: Target,
    },
    /// Send all traffic back to the stable version before the last change
    Rollback {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Hand a function's traffic back to the manifest
    Release {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// List the dead letters of asynchronous CloudEvents (cloudevents =
    /// "async"), or replay or discard one
    DeadLetters {
        /// Only this function's
        #[arg(long)]
        function: Option<String>,
        /// Queue dead letter SEQ for delivery again
        #[arg(long, value_name = "SEQ", conflicts_with = "discard")]
        replay: Option<u64>,
        /// Forget dead letter SEQ
        #[arg(long, value_name = "SEQ")]
        discard: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
}

impl Target {
    fn token(&self) -> Result<String> {
        if let Some(f) = &self.admin_token_file {
            return Ok(std::fs::read_to_string(f)
                .with_context(|| format!("--admin-token-file {}", f.display()))?
                .trim()
                .to_string());
        }
        if let Ok(t) = std::env::var("WEDGE_ADMIN_TOKEN")
            && !t.trim().is_empty()
        {
            return Ok(t.trim().to_string());
        }
        let port = self.admin.port_u16().unwrap_or(80);
        let path = crate::serve::token_dir()?.join(format!("admin-{port}.token"));
        Ok(std::fs::read_to_string(&path)
            .with_context(|| {
                format!(
                    "no admin token: give --admin-token-file or WEDGE_ADMIN_TOKEN (looked for {})",
                    path.display()
                )
            })?
            .trim()
            .to_string())
    }

    /// One API call; the server's JSON on success, its error otherwise.
    fn call(&self, method: http::Method, path: &str, body: Vec<u8>) -> Result<Value> {
        let base = self.admin.to_string();
        let url: http::Uri = format!("{}{path}", base.trim_end_matches('/'))
            .parse()
            .with_context(|| format!("--admin {base}"))?;
        let headers = vec![
            (
                "authorization".to_string(),
                format!("Bearer {}", self.token()?),
            ),
            (
                "content-type".to_string(),
                "application/octet-stream".to_string(),
            ),
        ];
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (status, text) = runtime
            .block_on(wedge_observe::export::send(
                method,
                &url,
                &headers,
                body.into(),
                Duration::from_secs(300),
            ))
            .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
        let v: Value = serde_json::from_slice(&text)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&text).trim().to_string()));
        if !(200..300).contains(&status) {
            let message = v["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or(v.to_string());
            bail!("{status}: {message}");
        }
        Ok(v)
    }
}

pub fn main(cmd: ControlCommand) -> Result<i32> {
    use http::Method as M;
    let (target, v) = match &cmd {
        ControlCommand::Ls(t) => (t, t.call(M::GET, "/v1/functions", vec![])?),
        ControlCommand::Status { name, target } => (
            target,
            target.call(M::GET, &format!("/v1/functions/{name}"), vec![])?,
        ),
        ControlCommand::Deploy {
            name,
            file,
            version,
            weight,
            on_node,
            target,
        } => {
            let mut path =
                format!("/v1/functions/{name}/versions?version={version}&weight={weight}");
            let oci = wedge_manifest::oci_reference(file);
            let bytes = if let Some(reference) = oci {
                path.push_str("&oci=");
                path.extend(percent_encoding::utf8_percent_encode(
                    reference,
                    percent_encoding::NON_ALPHANUMERIC,
                ));
                Vec::new()
            } else if *on_node {
                let file = file.to_string_lossy();
                path.push_str("&path=");
                path.extend(percent_encoding::utf8_percent_encode(
                    &file,
                    percent_encoding::NON_ALPHANUMERIC,
                ));
                Vec::new()
            } else {
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?
            };
            (target, target.call(M::POST, &path, bytes)?)
        }
        ControlCommand::Rollout {
            name,
            version,
            steps,
            interval,
            max_error_ratio,
            max_latency_ratio,
            min_requests,
            on_failure,
            prometheus,
            checks,
            pause,
            resume,
            abort,
            target,
        } => {
            let base = format!("/v1/functions/{name}/rollout");
            let v = match (version, *pause, *resume, *abort) {
                (_, true, _, _) => target.call(M::POST, &format!("{base}/pause"), vec![])?,
                (_, _, true, _) => target.call(M::POST, &format!("{base}/resume"), vec![])?,
                (_, _, _, true) => target.call(M::POST, &format!("{base}/abort"), vec![])?,
                (Some(version), ..) => {
                    let queries = checks
                        .iter()
                        .map(|c| parse_check(c))
                        .collect::<Result<Vec<_>>>()?;
                    let plan = serde_json::json!({
                        "version": version, "steps": steps, "interval": interval,
                        "max_error_ratio": max_error_ratio,
                        "max_latency_ratio": max_latency_ratio,
                        "min_requests": min_requests, "on_failure": on_failure,
                        "prometheus": prometheus, "queries": queries,
                    });
                    target.call(M::POST, &base, serde_json::to_vec(&plan)?)?
                }
                (None, ..) => target.call(M::GET, &base, vec![])?,
            };
            if target.json {
                println!("{v:#}");
            } else {
                print_rollout(&v);
            }
            return Ok(0);
        }
        ControlCommand::Delete {
            name,
            version,
            target,
        } => {
            let path = format!("/v1/functions/{name}/versions/{version}");
            (target, target.call(M::DELETE, &path, vec![])?)
        }
        ControlCommand::Traffic {
            name,
            weights,
            target,
        } => {
            let mut body = serde_json::Map::new();
            for w in weights {
                let (v, p) = w
                    .split_once('=')
                    .with_context(|| format!("`{w}`: give VERSION=PERCENT, e.g. v2=10"))?;
                let p: f64 = p
                    .trim_end_matches('%')
                    .parse()
                    .with_context(|| format!("`{w}`: the percent is not a number"))?;
                body.insert(v.to_string(), p.into());
            }
            let body = serde_json::to_vec(&body)?;
            let path = format!("/v1/functions/{name}/traffic");
            (target, target.call(M::PUT, &path, body)?)
        }
        ControlCommand::Promote {
            name,
            version,
            target,
        } => {
            let path = format!("/v1/functions/{name}/promote?version={version}");
            (target, target.call(M::POST, &path, vec![])?)
        }
        ControlCommand::Rollback { name, target } => {
            let path = format!("/v1/functions/{name}/rollback");
            (target, target.call(M::POST, &path, vec![])?)
        }
        ControlCommand::Release { name, target } => {
            let path = format!("/v1/functions/{name}/traffic");
            (target, target.call(M::DELETE, &path, vec![])?)
        }
        ControlCommand::DeadLetters {
            function,
            replay,
            discard,
            target,
        } => {
            let base = "/v1/events/dead-letters";
            let v = match (replay, discard) {
                (Some(seq), _) => target.call(M::POST, &format!("{base}/{seq}/replay"), vec![])?,
                (_, Some(seq)) => target.call(M::DELETE, &format!("{base}/{seq}"), vec![])?,
                _ => {
                    let query = function
                        .as_ref()
                        .map(|f| format!("?function={f}"))
                        .unwrap_or_default();
                    target.call(M::GET, &format!("{base}{query}"), vec![])?
                }
            };
            if target.json {
                println!("{v:#}");
            } else {
                print_dead_letters(&v);
            }
            return Ok(0);
        }
    };
    if target.json {
        println!("{v:#}");
        return Ok(0);
    }
    match v["functions"].as_array() {
        Some(all) => print_table(all),
        None => print_function(&v),
    }
    Ok(0)
}

/// `NAME<=MAX:QUERY` or `NAME>=MIN:QUERY` as a rollout query.
fn parse_check(check: &str) -> Result<Value> {
    let bad = || {
        anyhow::anyhow!(
            "--check `{check}`: give NAME<=MAX:QUERY or NAME>=MIN:QUERY, e.g. \
             'errors<=0.01:sum(rate(faas_errors_total[1m]))'"
        )
    };
    let (head, query) = check.split_once(':').ok_or_else(bad)?;
    let (name, bound, key) = if let Some((n, b)) = head.split_once("<=") {
        (n, b, "max")
    } else if let Some((n, b)) = head.split_once(">=") {
        (n, b, "min")
    } else {
        return Err(bad());
    };
    let bound: f64 = bound.trim().parse().map_err(|_| bad())?;
    if name.trim().is_empty() || query.trim().is_empty() {
        return Err(bad());
    }
    let mut q = serde_json::Map::new();
    q.insert("name".into(), name.trim().into());
    q.insert("query".into(), query.trim().into());
    q.insert(key.into(), bound.into());
    Ok(Value::Object(q))
}

fn print_rollout(r: &Value) {
    println!(
        "rollout    {} {}",
        r["version"].as_str().unwrap_or("?"),
        r["state"].as_str().unwrap_or("?")
    );
    println!(
        "step       {} of {} at {}%",
        r["step"].as_u64().unwrap_or(0) + 1,
        r["steps"].as_array().map_or(0, Vec::len),
        r["weight"]
    );
    for d in r["history"].as_array().into_iter().flatten() {
        println!(
            "  {:<9} at {:>5}%: {}",
            d["decision"].as_str().unwrap_or("?"),
            d["weight"],
            d["reason"].as_str().unwrap_or("")
        );
    }
}

fn traffic_line(f: &Value) -> String {
    f["traffic"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|v| format!("{}={}%", v["version"].as_str().unwrap_or("?"), v["weight"]))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn print_table(all: &[Value]) {
    println!(
        "{:<20} {:<9} {:<16} {:<30} ROUTES",
        "NAME", "MANAGED", "STABLE", "TRAFFIC"
    );
    for f in all {
        let routes: Vec<&str> = f["routes"]
            .as_array()
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!(
            "{:<20} {:<9} {:<16} {:<30} {}",
            f["name"].as_str().unwrap_or("?"),
            f["managed_by"].as_str().unwrap_or("?"),
            f["stable"].as_str().unwrap_or("?"),
            traffic_line(f),
            routes.join(" ")
        );
    }
}

fn print_function(f: &Value) {
    println!("function   {}", f["name"].as_str().unwrap_or("?"));
    println!("managed by {}", f["managed_by"].as_str().unwrap_or("?"));
    println!("stable     {}", f["stable"].as_str().unwrap_or("?"));
    println!("traffic    {}", traffic_line(f));
    if let Some(p) = f["previous_stable"].as_str() {
        println!("rollback   to {p}");
    }
    if let Some(r) = f["rollout"].as_object() {
        println!(
            "rollout    {} {} at {}%",
            r.get("version").and_then(Value::as_str).unwrap_or("?"),
            r.get("state").and_then(Value::as_str).unwrap_or("?"),
            r.get("weight").unwrap_or(&Value::Null)
        );
    }
    if let Some(c) = f["last_change"].as_object() {
        println!(
            "changed    {} (unix {})",
            c.get("reason").and_then(Value::as_str).unwrap_or("?"),
            c.get("at").unwrap_or(&Value::Null)
        );
    }
    if let Some(stored) = f["stored_versions"].as_array()
        && !stored.is_empty()
    {
        println!("stored     {}", stored.len());
        for s in stored {
            let sha = s["sha256"].as_str().unwrap_or("");
            println!(
                "  {:<16} sha256:{}",
                s["version"].as_str().unwrap_or("?"),
                &sha[..sha.len().min(12)]
            );
        }
    }
}

/// Dead letters as a table, or what a replay or discard did.
fn print_dead_letters(v: &Value) {
    let Some(all) = v["dead_letters"].as_array() else {
        match (v["replayed"].as_u64(), v["discarded"].as_u64()) {
            (Some(old), _) => println!("dead letter #{old} queued again as #{}", v["seq"]),
            (_, Some(seq)) => println!("dead letter #{seq} discarded"),
            _ => println!("{v}"),
        }
        return;
    };
    println!(
        "{:<8} {:<16} {:<24} {:<8} {:<20} DETAIL",
        "SEQ", "FUNCTION", "EVENT", "ATTEMPTS", "REASON"
    );
    for d in all {
        let f = &d["failure"];
        println!(
            "{:<8} {:<16} {:<24} {:<8} {:<20} {}",
            d["seq"],
            d["function"].as_str().unwrap_or(""),
            d["headers"]["ce-id"].as_str().unwrap_or("-"),
            f["attempts"],
            f["reason"].as_str().unwrap_or(""),
            f["detail"].as_str().unwrap_or("")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::parse_check;

    #[test]
    fn checks_parse_into_rollout_queries() {
        let q = parse_check("errors<=0.01:sum(rate(x[1m:10s]))").unwrap();
        assert_eq!(q["name"], "errors");
        assert_eq!(q["query"], "sum(rate(x[1m:10s]))");
        assert_eq!(q["max"], 0.01);
        let q = parse_check("success>=0.99: avg(up)").unwrap();
        assert_eq!(
            (q["min"].as_f64(), q["query"].as_str()),
            (Some(0.99), Some("avg(up)"))
        );
        for bad in ["errors", "errors<=x:q", "<=1:q", "e<=1:", "e=1:q"] {
            assert!(parse_check(bad).is_err(), "{bad}");
        }
    }
}
