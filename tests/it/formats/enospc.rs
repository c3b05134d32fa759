//! A file system that fills up under a write: the clusters the failed
//! write allocated go back (`qcow2_alloc_cluster_abort`), so the image
//! checks clean in Strata and in `qemu-img check` — no leak, no corruption.

use super::*;
use strata_formats::{CreateOptions, Qcow2};

/// `ENOSPC`.
const ENOSPC: i32 = 28;

/// Memory that refuses to grow beyond `capacity` bytes, as a full file
/// system refuses the writes that would allocate blocks.
struct DiskFull {
    inner: MemStorage,
    capacity: u64,
}

impl DiskFull {
    fn check_fits(&self, end: u64) -> std::io::Result<()> {
        if end > self.capacity {
            return Err(std::io::Error::from_raw_os_error(ENOSPC));
        }
        Ok(())
    }
}

impl Storage for DiskFull {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> std::io::Result<()> {
        let len = self.inner.len()?;
        let end = offset + buf.len() as u64;
        if end > len {
            self.check_fits(end)?;
        }
        self.inner.write_at(offset, buf)
    }
    fn len(&mut self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&mut self, len: u64) -> std::io::Result<()> {
        self.check_fits(len)?;
        self.inner.set_len(len)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[test]
fn a_write_that_runs_out_of_space_leaks_no_cluster() {
    let scratch = Scratch::new("enospc");
    let cs = 65536u64;
    let mut failures = 0;
    for room_in_half_clusters in 0..16u64 {
        let mut st = DiskFull {
            inner: MemStorage::new(),
            capacity: u64::MAX,
        };
        let mut q = Qcow2::create(&mut st, &CreateOptions::new(64 << 20)).unwrap();
        q.write(&mut st, 0, &[1; 65536], None).unwrap();
        st.capacity = st.len().unwrap() + room_in_half_clusters * cs / 2;
        // Unaligned, over several clusters: head and tail copy-on-write.
        let result = q.write(&mut st, 3 * cs + 512, &[2; 5 * 65536], None);
        if let Err(err) = &result {
            assert_eq!(err.raw_os_error(), Some(ENOSPC), "{err}");
            failures += 1;
        }
        let report = Qcow2::open(&mut st.inner, Access::ReadOnly)
            .unwrap()
            .check(&mut st.inner)
            .unwrap();
        assert_eq!(
            (report.corruptions, report.leaks),
            (0, 0),
            "room {room_in_half_clusters}/2 clusters: {report:?}"
        );
        let path = scratch.path(&format!("full-{room_in_half_clusters}.qcow2"));
        let mut bytes = vec![0u8; st.inner.len().unwrap() as usize];
        st.inner.read_at(0, &mut bytes).unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let (ok, stdout, stderr) = run_tool("qemu-img", &["check", p(&path)]);
        assert!(
            ok && stdout.contains("No errors were found on the image."),
            "room {room_in_half_clusters}/2 clusters: {stdout}{stderr}"
        );
    }
    assert!(
        failures >= 8,
        "the disk filled up in most cases: {failures}"
    );
}
