//! A blocking client for the control API: the CLI verbs need one request each, and `run`
//! must exec right after, with no runtime threads around.

use std::{
    io::{BufRead, BufReader},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
};

use crate::api::{API_VERSION, ApprovalState, Request, RequestBody, Response, ResponseBody};

/// Why a CLI call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to the agent-guard daemon at {socket}: {source} (is `agent-guard daemon` running?)")]
    Connect { socket: PathBuf, source: std::io::Error },
    #[error("talking to the daemon at {socket}: {source}")]
    Io { socket: PathBuf, source: std::io::Error },
    #[error("the daemon at {socket} sent a response that is not API v{API_VERSION}: {detail}")]
    Protocol { socket: PathBuf, detail: String },
    #[error("{message} ({code:?})")]
    Refused { code: crate::api::ErrorCode, message: String },
}

pub fn call(socket: &Path, body: RequestBody) -> Result<ResponseBody, ClientError> {
    let io = |source| ClientError::Io { socket: socket.to_path_buf(), source };
    let stream =
        UnixStream::connect(socket).map_err(|source| ClientError::Connect { socket: socket.to_path_buf(), source })?;
    let mut line = serde_json::to_string(&Request { version: API_VERSION, body }).expect("requests serialize");
    line.push('\n');
    // MSG_NOSIGNAL: the CLI takes SIGPIPE's default action (cli/mod.rs), and a daemon that
    // closes the connection must give an error, not a silent death.
    let mut sent = 0;
    while sent < line.len() {
        match nix::sys::socket::send(
            std::os::fd::AsRawFd::as_raw_fd(&stream),
            &line.as_bytes()[sent..],
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        ) {
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(errno) => return Err(io(std::io::Error::from(errno))),
        }
    }
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply).map_err(io)?;
    let response: Response = serde_json::from_str(&reply)
        .map_err(|err| ClientError::Protocol { socket: socket.to_path_buf(), detail: err.to_string() })?;
    match response.body {
        ResponseBody::Error { code, message } => Err(ClientError::Refused { code, message }),
        body => Ok(body),
    }
}

/// The approvals the caller may see (from inside a task: its own task's).
pub fn approvals(socket: &Path) -> Result<Vec<crate::api::ApprovalInfo>, ClientError> {
    match call(socket, RequestBody::ListApprovals)? {
        ResponseBody::Approvals { approvals } => Ok(approvals),
        other => {
            Err(ClientError::Protocol { socket: socket.to_path_buf(), detail: format!("unexpected reply {other:?}") })
        }
    }
}

/// Polls `approval` until it is decided or `timeout` passes; its state then.
pub fn wait_decided(
    socket: &Path,
    mut approval: crate::api::ApprovalInfo,
    timeout: std::time::Duration,
) -> Result<crate::api::ApprovalInfo, ClientError> {
    let end = std::time::Instant::now() + timeout;
    while approval.state == ApprovalState::Pending && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if let Some(now) = approvals(socket)?.into_iter().find(|a| a.id == approval.id) {
            approval = now;
        }
    }
    Ok(approval)
}
