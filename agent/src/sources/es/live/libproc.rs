//! The few libproc and Mach calls the socket poller needs, with the
//! `<sys/proc_info.h>` structures libc does not define. Layouts follow
//! xnu's `bsd/sys/proc_info.h`; the size assertions below fail the macOS
//! type-check if a field is wrong.

use std::mem::{size_of, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use libc::{c_int, c_void};

use crate::sources::es::mapping::{AuditToken, SocketConn};

const PROC_PIDLISTFDS: c_int = 1;
const PROC_PIDTBSDINFO: c_int = 3;
const PROC_PIDFDSOCKETINFO: c_int = 3;
const PROX_FDTYPE_SOCKET: u32 = 2;
const SOCKINFO_IN: c_int = 1;
const SOCKINFO_TCP: c_int = 2;
const INI_IPV4: u8 = 0x1;
const INI_IPV6: u8 = 0x2;
const TSI_S_LISTEN: c_int = 1;
const TSI_S_SYN_SENT: c_int = 2;
const TSI_S_ESTABLISHED: c_int = 4;
/// `task_info` flavor for the task's audit token (`<mach/task_info.h>`).
const TASK_AUDIT_TOKEN: libc::task_flavor_t = 15;

// FFI layout: every field must exist even where vigil never reads it.
#[allow(dead_code)]
#[repr(C)]
#[derive(Clone, Copy)]
struct ProcFileInfo {
    fi_openflags: u32,
    fi_status: u32,
    fi_offset: i64,
    fi_type: i32,
    fi_guardflags: u32,
}

// FFI layout: every field must exist even where vigil never reads it.
#[allow(dead_code)]
#[repr(C)]
#[derive(Clone, Copy)]
struct VinfoStat {
    vst_dev: u32,
    vst_mode: u16,
    vst_nlink: u16,
    vst_ino: u64,
    vst_uid: u32,
    vst_gid: u32,
    vst_times: [i64; 8],
    vst_size: i64,
    vst_blocks: i64,
    vst_blksize: i32,
    vst_flags: u32,
    vst_gen: u32,
    vst_rdev: u32,
    vst_qspare: [i64; 2],
}

// FFI layout: every field must exist even where vigil never reads it.
#[allow(dead_code)]
#[repr(C)]
#[derive(Clone, Copy)]
struct SockbufInfo {
    sbi_cc: u32,
    sbi_hiwat: u32,
    sbi_mbcnt: u32,
    sbi_mbmax: u32,
    sbi_lowat: u32,
    sbi_flags: i16,
    sbi_timeo: i16,
}

/// `in4in6_addr` / `in6_addr`: 16 bytes; IPv4 sits in the last four.
// FFI layout: every field must exist even where vigil never reads it.
#[allow(dead_code)]
#[repr(C)]
#[derive(Clone, Copy)]
struct InAddr46 {
    bytes: [u8; 16],
}

// FFI layout: every field must exist even where vigil never reads it.
#[allow(dead_code)]
#[repr(C)]
#[derive(Clone, Copy)]
struct InSockinfoV6 {
    in6_hlim: u8,
    in6_cksum: c_int,
    in6_ifindex: u16,
    in6_hops: i16,
}

// FFI layout: every field must exist even where vigil never reads it.
#[allow(dead_code)]
#[repr(C)]
#[derive(Clone, Copy)]
struct InSockinfo {
    insi_fport: c_int,
    insi_lport: c_int,
    insi_gencnt: u64,
    insi_flags: u32,
    insi_flow: u32,
    insi_vflag: u8,
    insi_ip_ttl: u8,
    rfu_1: u32,
    insi_faddr: InAddr46,
    insi_laddr: InAddr46,
    insi_v4_tos: u8,
    insi_v6: InSockinfoV6,
}

// FFI layout: every field must exist even where vigil never reads it.
#[allow(dead_code)]
#[repr(C)]
#[derive(Clone, Copy)]
struct TcpSockinfo {
    tcpsi_ini: InSockinfo,
    tcpsi_state: c_int,
    tcpsi_timer: [c_int; 4],
    tcpsi_mss: c_int,
    tcpsi_flags: u32,
    rfu_1: u32,
    tcpsi_tp: u64,
}

/// `soi_proto`: its largest member is `un_sockinfo` (two sockaddr unions of
/// SOCK_MAXADDRLEN = 255 bytes after two u64s), 528 bytes with padding.
#[allow(dead_code)]
#[repr(C)]
#[derive(Clone, Copy)]
union SoiProto {
    pri_in: InSockinfo,
    pri_tcp: TcpSockinfo,
    _un: [u64; 66],
}

// FFI layout: every field must exist even where vigil never reads it.
#[allow(dead_code)]
#[repr(C)]
#[derive(Clone, Copy)]
struct SocketInfo {
    soi_stat: VinfoStat,
    soi_so: u64,
    soi_pcb: u64,
    soi_type: c_int,
    soi_protocol: c_int,
    soi_family: c_int,
    soi_options: i16,
    soi_linger: i16,
    soi_state: i16,
    soi_qlen: i16,
    soi_incqlen: i16,
    soi_qlimit: i16,
    soi_timeo: i16,
    soi_error: u16,
    soi_oobmark: u32,
    soi_rcv: SockbufInfo,
    soi_snd: SockbufInfo,
    soi_kind: c_int,
    rfu_1: u32,
    soi_proto: SoiProto,
}

// FFI layout: every field must exist even where vigil never reads it.
#[allow(dead_code)]
#[repr(C)]
#[derive(Clone, Copy)]
struct SocketFdInfo {
    pfi: ProcFileInfo,
    psi: SocketInfo,
}

// PROC_PIDFDSOCKETINFO_SIZE on every macOS since 10.5.
const _: () = assert!(size_of::<InSockinfo>() == 80);
const _: () = assert!(size_of::<TcpSockinfo>() == 120);
const _: () = assert!(size_of::<VinfoStat>() == 136);
const _: () = assert!(size_of::<SocketInfo>() == 768);
const _: () = assert!(size_of::<SocketFdInfo>() == 792);

/// What one socket fd is, for the poller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SocketKind {
    /// A TCP socket connecting or connected.
    Tcp(SocketConn),
    /// A connected UDP socket (`connect(2)` on a datagram socket).
    Udp(SocketConn),
    /// A TCP listener on this local port.
    Listen(u16),
}

fn ip_of(addr: &InAddr46, vflag: u8) -> Option<IpAddr> {
    if vflag & INI_IPV4 != 0 {
        let b = addr.bytes;
        Some(IpAddr::V4(Ipv4Addr::new(b[12], b[13], b[14], b[15])))
    } else if vflag & INI_IPV6 != 0 {
        let v6 = Ipv6Addr::from(addr.bytes);
        // A dual-stack socket talking IPv4 shows the mapped form.
        Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
    } else {
        None
    }
}

/// Ports in `in_sockinfo` are stored in network byte order.
fn port_of(raw: c_int) -> u16 {
    u16::from_be(raw as u16)
}

fn conn_of(pid: i32, ini: &InSockinfo, transport: &'static str) -> Option<SocketConn> {
    let remote_port = port_of(ini.insi_fport);
    if remote_port == 0 {
        return None;
    }
    Some(SocketConn {
        pid,
        local: SocketAddr::new(
            ip_of(&ini.insi_laddr, ini.insi_vflag)?,
            port_of(ini.insi_lport),
        ),
        remote: SocketAddr::new(ip_of(&ini.insi_faddr, ini.insi_vflag)?, remote_port),
        transport,
    })
}

fn classify(pid: i32, info: &SocketFdInfo) -> Option<SocketKind> {
    let psi = &info.psi;
    match psi.soi_kind {
        SOCKINFO_TCP => {
            // Safety: soi_kind says the union holds a tcp_sockinfo.
            let tcp = unsafe { psi.soi_proto.pri_tcp };
            match tcp.tcpsi_state {
                TSI_S_LISTEN => Some(SocketKind::Listen(port_of(tcp.tcpsi_ini.insi_lport))),
                TSI_S_SYN_SENT | TSI_S_ESTABLISHED => {
                    conn_of(pid, &tcp.tcpsi_ini, "tcp").map(SocketKind::Tcp)
                }
                _ => None,
            }
        }
        SOCKINFO_IN if psi.soi_protocol == libc::IPPROTO_UDP => {
            // Safety: soi_kind says the union holds an in_sockinfo.
            let ini = unsafe { psi.soi_proto.pri_in };
            conn_of(pid, &ini, "udp").map(SocketKind::Udp)
        }
        _ => None,
    }
}

/// Every pid on the system (a snapshot; processes come and go meanwhile).
pub(crate) fn all_pids() -> Vec<i32> {
    // Safety: a null buffer asks for the needed size.
    let n = unsafe { libc::proc_listallpids(std::ptr::null_mut(), 0) };
    if n <= 0 {
        return Vec::new();
    }
    // Room for processes started between the two calls.
    let mut pids = vec![0i32; n as usize + 64];
    let bytes = c_int::try_from(pids.len() * size_of::<i32>()).unwrap_or(c_int::MAX);
    // Safety: the buffer holds `bytes` bytes.
    let got = unsafe { libc::proc_listallpids(pids.as_mut_ptr().cast::<c_void>(), bytes) };
    pids.truncate(got.max(0) as usize);
    pids.retain(|&p| p > 0);
    pids
}

/// The sockets of `pid` that matter to the poller; empty when the process
/// is gone or not readable.
pub(crate) fn sockets(pid: i32) -> Vec<SocketKind> {
    let fd_size = size_of::<libc::proc_fdinfo>();
    // Safety: a null buffer asks for the needed size.
    let need = unsafe { libc::proc_pidinfo(pid, PROC_PIDLISTFDS, 0, std::ptr::null_mut(), 0) };
    if need <= 0 {
        return Vec::new();
    }
    let mut fds: Vec<libc::proc_fdinfo> = Vec::with_capacity(need as usize / fd_size + 16);
    let cap = c_int::try_from(fds.capacity() * fd_size).unwrap_or(c_int::MAX);
    // Safety: the buffer has room for `cap` bytes; the kernel writes whole
    // proc_fdinfo records and returns how many bytes.
    let got = unsafe {
        libc::proc_pidinfo(
            pid,
            PROC_PIDLISTFDS,
            0,
            fds.as_mut_ptr().cast::<c_void>(),
            cap,
        )
    };
    if got <= 0 {
        return Vec::new();
    }
    // Safety: `got` bytes of initialised records, at most the capacity.
    unsafe { fds.set_len((got as usize / fd_size).min(fds.capacity())) };
    let mut out = Vec::new();
    for fd in fds.iter().filter(|f| f.proc_fdtype == PROX_FDTYPE_SOCKET) {
        let mut info = MaybeUninit::<SocketFdInfo>::zeroed();
        // Safety: the buffer is exactly PROC_PIDFDSOCKETINFO_SIZE bytes.
        let n = unsafe {
            libc::proc_pidfdinfo(
                pid,
                fd.proc_fd,
                PROC_PIDFDSOCKETINFO,
                info.as_mut_ptr().cast::<c_void>(),
                size_of::<SocketFdInfo>() as c_int,
            )
        };
        if n as usize != size_of::<SocketFdInfo>() {
            continue; // closed meanwhile, or not ours to read
        }
        // Safety: the kernel filled the whole structure (checked above);
        // zeroed memory is valid for every field.
        let info = unsafe { info.assume_init() };
        if let Some(k) = classify(pid, &info) {
            out.push(k);
        }
    }
    out
}

/// Full path of the executable of `pid`.
pub(crate) fn pid_path(pid: i32) -> Option<String> {
    let mut buf = vec![0u8; 4 * libc::PATH_MAX as usize];
    // Safety: the buffer holds `buf.len()` bytes.
    let n = unsafe { libc::proc_pidpath(pid, buf.as_mut_ptr().cast::<c_void>(), buf.len() as u32) };
    if n <= 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Parent pid of `pid`.
pub(crate) fn ppid(pid: i32) -> Option<i32> {
    let mut info = MaybeUninit::<libc::proc_bsdinfo>::zeroed();
    let size = size_of::<libc::proc_bsdinfo>() as c_int;
    // Safety: the buffer is one proc_bsdinfo.
    let n = unsafe { libc::proc_pidinfo(pid, PROC_PIDTBSDINFO, 0, info.as_mut_ptr().cast(), size) };
    if n != size {
        return None;
    }
    // Safety: filled by the kernel (checked above); zeroed is valid anyway.
    let info = unsafe { info.assume_init() };
    i32::try_from(info.pbi_ppid).ok()
}

extern "C" {
    fn task_name_for_pid(
        target: libc::mach_port_t,
        pid: c_int,
        task_name: *mut libc::mach_port_t,
    ) -> libc::kern_return_t;
    fn mach_port_deallocate(
        task: libc::mach_port_t,
        name: libc::mach_port_t,
    ) -> libc::kern_return_t;
    /// What the C macro `mach_task_self()` reads (libc's wrapper is deprecated).
    static mach_task_self_: libc::mach_port_t;
}

fn task_self() -> libc::mach_port_t {
    // Safety: set once by the runtime before main, never written again.
    unsafe { mach_task_self_ }
}

/// The audit token of a live process (its pidversion makes the entity id).
/// Needs root; the task name port is released again, so polling does not
/// leak Mach port references.
pub(crate) fn audit_token(pid: i32) -> Option<AuditToken> {
    let mut name: libc::mach_port_t = 0;
    // Safety: out-pointer to a local.
    let kr = unsafe { task_name_for_pid(task_self(), pid, &mut name) };
    if kr != libc::KERN_SUCCESS {
        return None;
    }
    let mut val = [0u32; 8];
    let mut count = val.len() as libc::mach_msg_type_number_t;
    // Safety: `val` is an audit_token_t (8 x u32) and `count` its length
    // in natural_t units.
    let kr = unsafe {
        libc::task_info(
            name,
            TASK_AUDIT_TOKEN,
            val.as_mut_ptr().cast::<libc::integer_t>(),
            &mut count,
        )
    };
    // Safety: `name` is a send right this function got above.
    unsafe { mach_port_deallocate(task_self(), name) };
    if kr != libc::KERN_SUCCESS {
        return None;
    }
    AuditToken::from_array(val.map(i64::from))
}

/// `sysctlbyname` for a string value (`kern.osproductversion`, ...).
pub(crate) fn sysctl_string(name: &str) -> Option<String> {
    let cname = std::ffi::CString::new(name).ok()?;
    let mut len: libc::size_t = 0;
    // Safety: a null buffer asks for the length.
    let r = unsafe {
        libc::sysctlbyname(
            cname.as_ptr(),
            std::ptr::null_mut(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if r != 0 || len == 0 {
        return None;
    }
    let mut buf = vec![0u8; len];
    // Safety: the buffer holds `len` bytes.
    let r = unsafe {
        libc::sysctlbyname(
            cname.as_ptr(),
            buf.as_mut_ptr().cast::<c_void>(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if r != 0 {
        return None;
    }
    buf.truncate(len);
    while buf.last() == Some(&0) {
        buf.pop();
    }
    String::from_utf8(buf).ok()
}
