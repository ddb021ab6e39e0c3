//! Tracepoint record layouts, read from tracefs at start (they differ between kernels: 6.18's
//! `sched_process_fork` moved comm to __`data_loc`; `group_dead` appeared in `sched_process_exit`).

use std::path::{Path, PathBuf};

use super::KernelError;

pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Mounts tracefs at its usual place when it is not there (aya attaches tracepoints by the
/// ids under events/).
pub fn ensure_mounted() -> Result<(), KernelError> {
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(());
    }
    match nix::mount::mount(Some("tracefs"), TRACEFS, Some("tracefs"), nix::mount::MsFlags::empty(), None::<&str>) {
        Ok(()) => Ok(()),
        // Another daemon starting at the same moment mounted it first (EBUSY).
        Err(_) if Path::new(TRACEFS).join("events").is_dir() => Ok(()),
        Err(errno) => Err(KernelError::Tracefs { path: PathBuf::from(TRACEFS), detail: errno.to_string() }),
    }
}

/// Offset of `field` in the record of `category/event`, or None when the record has no such field.
pub fn field_offset(category: &str, event: &str, field: &str) -> Result<Option<u32>, KernelError> {
    let path = Path::new(TRACEFS).join("events").join(category).join(event).join("format");
    let text = std::fs::read_to_string(&path)
        .map_err(|err| KernelError::Tracefs { path: path.clone(), detail: err.to_string() })?;
    Ok(parse_offset(&text, field))
}

fn parse_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let name = decl.rsplit(|c: char| c.is_whitespace() || c == '*').next()?;
        let name = name.split('[').next()?;
        if name != field {
            return None;
        }
        rest.trim().strip_prefix("offset:")?.split(';').next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_offsets_from_a_format_file() {
        let format = "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;\n\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;\n";
        assert_eq!(super::parse_offset(format, "pid"), Some(24));
        assert_eq!(super::parse_offset(format, "comm"), Some(8));
        assert_eq!(super::parse_offset(format, "group_dead"), Some(32));
        assert_eq!(super::parse_offset(format, "prio"), None);
    }
}
