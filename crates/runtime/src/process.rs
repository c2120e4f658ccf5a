//! The local process supervisor: each node is a child process in its own
//! process group, with stdout and stderr appended to its log file.

use std::collections::HashMap;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use nix::sys::signal::{self, Signal};
use nix::unistd::{Pid, User};

use crate::{logs, ports, procfs, Liveness, NodeRuntime, NodeSpec, ProcessHandle, RuntimeError};

/// Runs nodes as local child processes.
#[derive(Debug, Default)]
pub struct ProcessRuntime {
    /// Children this control plane started, kept so they can be reaped.
    children: Mutex<HashMap<u32, Child>>,
}

impl ProcessRuntime {
    /// A supervisor with no children yet.
    pub fn new() -> Self {
        Self::default()
    }
}

/// Full path of `program`: as given if it has a `/`, else the first match on PATH.
pub fn resolve_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return is_executable(&path).then_some(path);
    }
    let search = std::env::var_os("PATH")?;
    std::env::split_paths(&search)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn io_error(node: &str, action: String) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        node: node.to_string(),
        action,
        source,
    }
}

/// Make the data dir and check it can be written.
fn prepare_data_dir(spec: &NodeSpec) -> Result<(), RuntimeError> {
    let fail = |source| RuntimeError::DataDir {
        node: spec.name.clone(),
        path: spec.data_dir.clone(),
        source,
    };
    std::fs::create_dir_all(&spec.data_dir).map_err(fail)?;
    let probe = spec.data_dir.join(".chainfleet-write-check");
    std::fs::write(&probe, b"ok").map_err(fail)?;
    std::fs::remove_file(&probe).map_err(fail)?;
    Ok(())
}

/// Write `contents` to `path` atomically: temp file, fsync, rename.
pub fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut temp_name = path.as_os_str().to_owned();
    temp_name.push(".tmp");
    let temp = PathBuf::from(temp_name);
    {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
    }
    std::fs::rename(&temp, path)
}

fn chown_to(path: &Path, user: &User) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
}

impl NodeRuntime for ProcessRuntime {
    fn start(&self, spec: &NodeSpec) -> Result<ProcessHandle, RuntimeError> {
        let program =
            resolve_program(&spec.launch.program).ok_or_else(|| RuntimeError::BinaryNotFound {
                node: spec.name.clone(),
                program: spec.launch.program.clone(),
            })?;
        for (what, port) in &spec.ports {
            if !ports::is_free(*port) {
                return Err(RuntimeError::PortInUse {
                    node: spec.name.clone(),
                    what: what.clone(),
                    port: *port,
                    holder: ports::holder(*port),
                });
            }
        }
        prepare_data_dir(spec)?;
        if let Some((path, contents)) = &spec.launch.config_file {
            write_atomically(path, contents.as_bytes()).map_err(io_error(
                &spec.name,
                format!("write config {}", path.display()),
            ))?;
        }
        let log = logs::open_append(&spec.log_path).map_err(io_error(
            &spec.name,
            format!("open log {}", spec.log_path.display()),
        ))?;
        let log_for_stderr = log
            .try_clone()
            .map_err(io_error(&spec.name, "duplicate the log handle".into()))?;

        let mut command = Command::new(&program);
        command
            .args(&spec.launch.args)
            .current_dir(&spec.data_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_for_stderr)
            // Own process group: Ctrl-C on the control plane must not hit nodes directly;
            // they are stopped in order, and survive a control-plane crash for re-adoption.
            .process_group(0);
        if let Some(user_name) = spec
            .run_as
            .as_deref()
            .filter(|_| nix::unistd::geteuid().is_root())
        {
            let user = User::from_name(user_name).ok().flatten().ok_or_else(|| {
                RuntimeError::NoSuchUser {
                    user: user_name.to_string(),
                }
            })?;
            for path in [spec.data_dir.as_path(), spec.log_path.as_path()] {
                chown_to(path, &user)
                    .map_err(io_error(&spec.name, format!("chown {}", path.display())))?;
            }
            if let Some((path, _)) = &spec.launch.config_file {
                chown_to(path, &user)
                    .map_err(io_error(&spec.name, format!("chown {}", path.display())))?;
            }
            command
                .uid(user.uid.as_raw())
                .gid(user.gid.as_raw())
                .env("HOME", &spec.data_dir)
                .env("USER", user_name);
        }
        let child = command
            .spawn()
            .map_err(io_error(&spec.name, format!("start {}", program.display())))?;
        let pid = child.id();
        let start_ticks = procfs::stat(pid).map(|(_, ticks)| ticks).unwrap_or(0);
        tracing::info!(node = %spec.name, pid, program = %program.display(), "node started");
        if let Ok(mut children) = self.children.lock() {
            children.insert(pid, child);
        }
        Ok(ProcessHandle { pid, start_ticks })
    }

    fn observe(&self, handle: &ProcessHandle) -> Liveness {
        if let Ok(mut children) = self.children.lock() {
            if let Some(child) = children.get_mut(&handle.pid) {
                match child.try_wait() {
                    Ok(None) => return Liveness::Running,
                    Ok(Some(status)) => {
                        children.remove(&handle.pid);
                        return Liveness::Exited {
                            code: status.code(),
                            signal: status.signal(),
                        };
                    }
                    Err(_) => {}
                }
            }
        }
        if procfs::is_alive(handle.pid, handle.start_ticks) {
            Liveness::Running
        } else {
            Liveness::Exited {
                code: None,
                signal: None,
            }
        }
    }

    fn terminate(&self, name: &str, handle: &ProcessHandle) -> Result<(), RuntimeError> {
        send(name, handle, Signal::SIGTERM)
    }

    fn kill(&self, name: &str, handle: &ProcessHandle) -> Result<(), RuntimeError> {
        send(name, handle, Signal::SIGKILL)
    }

    fn adopt(&self, spec: &NodeSpec, recorded: Option<ProcessHandle>) -> Option<ProcessHandle> {
        if let Some(handle) = recorded {
            if procfs::is_alive(handle.pid, handle.start_ticks) && is_process_of(spec, handle.pid) {
                return Some(handle);
            }
        }
        // A control plane killed between spawn and recording leaves a node with
        // no record; find it by its data dir on the command line.
        procfs::all_pids().into_iter().find_map(|pid| {
            if pid == std::process::id() || !is_process_of(spec, pid) {
                return None;
            }
            let (state, start_ticks) = procfs::stat(pid)?;
            (state != 'Z').then_some(ProcessHandle { pid, start_ticks })
        })
    }
}

/// Whether `pid` is this node's client: same program, and its data dir on the command line.
fn is_process_of(spec: &NodeSpec, pid: u32) -> bool {
    let Some(args) = procfs::cmdline(pid) else {
        return false;
    };
    let program_name = Path::new(&spec.launch.program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let runs_program = args
        .first()
        .is_some_and(|first| first.rsplit('/').next() == Some(program_name.as_str()));
    let data_dir = spec.data_dir.to_string_lossy();
    runs_program
        && args.iter().skip(1).any(|arg| {
            arg.strip_suffix('/')
                .unwrap_or(arg)
                .ends_with(data_dir.as_ref())
                || arg.contains(&format!("{data_dir}/"))
        })
}

fn send(name: &str, handle: &ProcessHandle, signal: Signal) -> Result<(), RuntimeError> {
    // Never signal a pid that now belongs to another process.
    if !procfs::is_alive(handle.pid, handle.start_ticks) {
        return Ok(());
    }
    let pid = i32::try_from(handle.pid).map_err(|_| RuntimeError::Signal {
        node: name.to_string(),
        pid: handle.pid,
        source: nix::Error::EINVAL,
    })?;
    match signal::kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
        Err(source) => Err(RuntimeError::Signal {
            node: name.to_string(),
            pid: handle.pid,
            source,
        }),
    }
}
