//! Shared helpers: node layouts, an RPC client, and a tiny HTTP server that
//! replays recorded answers or serves garbage.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chainfleet_chains::{Endpoint, LaunchSpec, NodeLayout, RpcClient};
use chainfleet_spec::{Chain, Client, Network, Role};
use chainfleet_testkit::{Daemon, DaemonSpec, Readiness, TempDir};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A client with a timeout short enough for tests, long enough for a busy CI box.
pub fn client() -> RpcClient {
    RpcClient::new(Duration::from_secs(10)).expect("build the RPC client")
}

/// A layout on fresh loopback ports with its data dir in `dir`.
pub fn layout(chain: Chain, network: Network, binary: &Path, dir: &Path) -> NodeLayout {
    let (rpc_port, p2p_port) = chainfleet_testkit::free_ports();
    NodeLayout {
        name: format!("{chain}-0"),
        chain,
        network,
        role: Role::Full,
        client: Client {
            binary: Some(binary.display().to_string()),
            version: None,
            args: vec![],
            config: BTreeMap::new(),
        },
        data_dir: dir.to_path_buf(),
        rpc_port,
        p2p_port,
        rpc_user: "chainfleet".into(),
        rpc_password: format!("pw-{rpc_port}"),
        peer_p2p_ports: vec![],
    }
}

/// Write the spec's config file and start exactly its program and args.
pub async fn start_rendered(
    spec: &LaunchSpec,
    layout: &NodeLayout,
    dir: TempDir,
    ready: Readiness,
) -> Daemon {
    if let Some((path, contents)) = &spec.config_file {
        std::fs::write(path, contents).expect("write the rendered config file");
    }
    let auth = spec
        .config_file
        .as_ref()
        .is_some_and(|(_, c)| c.contains("rpcpassword="));
    chainfleet_testkit::start(DaemonSpec {
        name: format!("{} (rendered launch)", layout.name),
        program: PathBuf::from(&spec.program),
        args: spec.args.clone(),
        dir,
        rpc_port: layout.rpc_port,
        p2p_port: layout.p2p_port,
        rpc_user: if auth {
            layout.rpc_user.clone()
        } else {
            String::new()
        },
        rpc_password: layout.rpc_password.clone(),
        ready,
    })
    .await
}

/// The endpoint of a testkit daemon, with basic auth when it has a user.
pub fn endpoint_of(daemon: &Daemon) -> Endpoint {
    Endpoint {
        url: daemon.rpc_url.clone(),
        basic_auth: (!daemon.rpc_user.is_empty())
            .then(|| (daemon.rpc_user.clone(), daemon.rpc_password.clone())),
    }
}

/// One HTTP request as the fake server saw it.
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, e.g. `/status`.
    pub path: String,
    /// The body.
    pub body: Vec<u8>,
}

/// One HTTP answer: status code, content type, body.
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// Content-Type header.
    pub content_type: &'static str,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Wait this long before answering (to test timeouts).
    pub delay: Duration,
}

impl Answer {
    /// A 200 answer with a JSON body.
    pub fn json(value: &Value) -> Self {
        Answer::raw(200, "application/json", value.to_string().into_bytes())
    }

    /// Any status, type and bytes.
    pub fn raw(status: u16, content_type: &'static str, body: Vec<u8>) -> Self {
        Answer {
            status,
            content_type,
            body,
            delay: Duration::ZERO,
        }
    }
}

type Handler = Arc<dyn Fn(&Request) -> Answer + Send + Sync>;

/// Serve `handler` on a free loopback port until the test ends; returns its endpoint.
pub async fn serve(handler: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("read the bound port").port();
    let handler: Handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let Some(request) = read_request(&mut socket).await else {
                    return;
                };
                let answer = handler(&request);
                tokio::time::sleep(answer.delay).await;
                let head = format!(
                    "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    answer.status,
                    answer.content_type,
                    answer.body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&answer.body).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    Endpoint::local(port)
}

/// Read one HTTP/1.1 request with a Content-Length body.
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(chunk.get(..n)?);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(buf.get(..header_end)?).to_string();
    let mut first = head.lines().next()?.split_whitespace();
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let length = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(chunk.get(..n)?);
    }
    Some(Request {
        method,
        path,
        body: buf.get(header_end..)?.to_vec(),
    })
}

/// A recorded answer file from `tests/fixtures`.
pub fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read fixture {}: {err}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("fixture {} is not JSON: {err}", path.display()))
}

/// A server replaying recorded answers: GET paths from `gets`, JSON-RPC
/// methods (single or batched) from `calls`, each with the caller's id put in.
pub async fn replay(
    gets: HashMap<&'static str, Value>,
    calls: HashMap<&'static str, Value>,
) -> Endpoint {
    serve(move |request| {
        if request.method == "GET" {
            return match gets.get(request.path.as_str()) {
                Some(answer) => Answer::json(answer),
                None => Answer::raw(404, "text/plain", b"not found".to_vec()),
            };
        }
        let answer_one = |call: &Value| {
            let method = call
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let mut answer = calls.get(method).cloned().unwrap_or_else(|| {
                json!({"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}})
            });
            answer["id"] = call.get("id").cloned().unwrap_or(Value::Null);
            answer
        };
        match serde_json::from_slice::<Value>(&request.body) {
            Ok(Value::Array(batch)) => {
                Answer::json(&Value::Array(batch.iter().map(answer_one).collect()))
            }
            Ok(call) => Answer::json(&answer_one(&call)),
            Err(_) => Answer::raw(400, "text/plain", b"bad request".to_vec()),
        }
    })
    .await
}
