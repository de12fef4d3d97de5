//! Process titles, as gunicorn's setproctitle gives them: `rgunicorn: master [name]` and
//! `rgunicorn: worker [name]` in `ps`/`top`. Linux only: the kernel name (`comm`, 15
//! bytes) through prctl, and the command line by overwriting the original argv memory in
//! place (the title is cut to the length of the command line the process started with;
//! the environment that follows it is left alone). Call only after the arguments were
//! read: `std::env::args` reads that same memory.

/// Set this process's title; failures leave the old title (it is cosmetic).
pub fn set(title: &str) {
    set_comm(title);
    if let Some((start, end)) = argv_area() {
        overwrite(start, end, title);
    }
}

fn set_comm(title: &str) {
    let mut name = [0u8; 16];
    let bytes = title.as_bytes();
    let n = bytes.len().min(15);
    name[..n].copy_from_slice(&bytes[..n]);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes from `name`,
    // which lives across the call.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0);
    }
}

/// The command line's memory, from /proc/self/stat (fields 48 and 49: arg_start, arg_end).
fn argv_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may itself contain spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let start: usize = fields.get(48 - 3)?.parse().ok()?;
    let end: usize = fields.get(49 - 3)?.parse().ok()?;
    (start != 0 && end > start).then_some((start, end))
}

fn overwrite(start: usize, end: usize, title: &str) {
    let len = end - start;
    let bytes = title.as_bytes();
    let n = bytes.len().min(len - 1);
    // SAFETY: [start, end) is this process's own argv strings, as the kernel reports them
    // for this very process: mapped and writable (the initial stack). Nothing in Rust
    // holds a reference into it (std copies arguments out when they are read).
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, len);
        area[..n].copy_from_slice(&bytes[..n]);
        area[n..].fill(0);
    }
}
