//! Exec ids and ancestry. The kernel names each image of a tagged process by (tgid, `exec_ns`)
//! and links it to the image that forked it (`ProcTag`); it reports every fork and exec of a
//! tagged process (`KIND_FORK`, `KIND_EXEC_START`). This table keeps those links, so an event can
//! carry its process's ancestry up to the task's root process even when the processes in
//! between have exited.

use std::collections::HashMap;

/// An image: (tgid, `CLOCK_BOOTTIME` of its fork or exec).
pub type Image = (u32, u64);

/// Links kept at most; beyond, new links are not learnt (ancestry then stops early; the events
/// still carry their own and their parent's exec ids, which come from the kernel).
const MAX_LINKS: usize = 262_144;
/// Ancestors listed at most.
const MAX_DEPTH: usize = 64;

/// Exec ids and ancestry of tagged processes, from fork and exec records.
pub struct Lineage {
    /// The first 8 hex digits of /`proc/sys/kernel/random/boot_id`: exec ids stay unique across
    /// reboots, when `CLOCK_BOOTTIME` starts again.
    boot: String,
    /// Image -> (its parent, its task).
    links: HashMap<Image, (Image, u32)>,
}

impl Default for Lineage {
    fn default() -> Self {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map_or_else(
            |_| "00000000".into(),
            |id| id.trim().chars().filter(char::is_ascii_hexdigit).take(8).collect(),
        );
        Lineage { boot, links: HashMap::new() }
    }
}

impl Lineage {
    /// `BOOT-TGID-EXECNS`: unique per image, stable across pid reuse.
    pub fn exec_id(&self, (tgid, exec_ns): Image) -> String {
        format!("{}-{tgid}-{exec_ns}", self.boot)
    }

    /// Learns that `image` was forked by `parent` (a root has parent (0, 0)).
    pub fn learn(&mut self, image: Image, parent: Image, task: u32) {
        if image.1 == 0 || (self.links.len() >= MAX_LINKS && !self.links.contains_key(&image)) {
            return;
        }
        self.links.insert(image, (parent, task));
    }

    /// `image`'s ancestors, nearest first, up to the task's root process.
    pub fn ancestry(&self, image: Image) -> Vec<Image> {
        let mut out = Vec::new();
        let mut at = image;
        while out.len() < MAX_DEPTH {
            let Some(&(parent, _)) = self.links.get(&at) else { break };
            if parent.0 == 0 {
                break;
            }
            out.push(parent);
            at = parent;
        }
        out
    }

    /// Drops the links of a task that ended.
    pub fn forget_task(&mut self, task: u32) {
        self.links.retain(|_, (_, t)| *t != task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestry_walks_up_to_the_root_through_exited_processes() {
        let mut lineage = Lineage { boot: "b".into(), links: HashMap::new() };
        let (root, shell, gone, curl) = ((10, 1), (11, 2), (12, 3), (13, 4));
        lineage.learn(root, (0, 0), 1);
        lineage.learn(shell, root, 1);
        lineage.learn(gone, shell, 1);
        lineage.learn(curl, gone, 1);
        assert_eq!(lineage.ancestry(curl), vec![gone, shell, root]);
        assert_eq!(lineage.ancestry(root), Vec::<Image>::new());
        // A reused pid is another image.
        assert_ne!(lineage.exec_id((13, 4)), lineage.exec_id((13, 9)));
        lineage.forget_task(1);
        assert!(lineage.ancestry(curl).is_empty());
    }
}
