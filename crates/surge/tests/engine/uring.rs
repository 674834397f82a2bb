//! The io_uring backend where it differs from epoll: a provided buffer ring far smaller
//! than the demand, and the fall-back to epoll where the system refuses io_uring.

use std::thread;

use surge::{Backend, Server, ServerError};

use crate::client::under_test::{assert_the_ring_ran_dry, start_unless_io_uring_refused};
use crate::client::{config, Client, Got, STOP};
use crate::harness::{start, TestHandler};

/// 4 buffers of 64 bytes for 24 connections that pipeline messages of up to 3000 bytes:
/// nearly every turn runs out of buffers (`ENOBUFS`) and re-arms receives, and every
/// message spans several buffers. Every echo must still come back whole and in order.
#[test]
fn a_buffer_ring_far_smaller_than_the_demand_loses_nothing() {
    let config = config(1).backend(Backend::IoUring).io_uring_buffers(4, 64).build().unwrap();
    let (server, _) = start(config);
    let addr = server.local_addrs()[0];
    let clients: Vec<_> = (0..24)
        .map(|c| {
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                for round in 0..5 {
                    let batch: Vec<String> = (0..60)
                        .map(|i| format!("{c}/{round}/{i} ").repeat((i * 37 + c) % 90 + 1))
                        .collect();
                    client.send_batch(&batch);
                    for text in batch {
                        assert_eq!(client.recv(), Got::Text(text));
                    }
                }
                let big: Vec<u8> = (0..200_000).map(|i| (i * 7 + c) as u8).collect();
                client.send_binary(&big);
                assert_eq!(client.recv(), Got::Binary(big));
            })
        })
        .collect();
    for client in clients {
        client.join().expect("every client got every echo");
    }
    assert_the_ring_ran_dry(&server);
    server.shutdown(STOP);
}

/// Each loop's ring counts what it met under `surge_io_uring_*{loop}`, and the sums are
/// [`Server::io_uring_stats`]. Skipped where the system refuses io_uring.
#[test]
fn the_rings_counts_are_exported_per_loop() {
    let config = config(2).backend(Backend::IoUring).io_uring_buffers(2, 64).build().unwrap();
    let factory = |_| TestHandler { shared: Default::default() };
    let Some(server) = start_unless_io_uring_refused(config, factory) else { return };
    let addr = server.local_addrs()[0];
    let mut clients: Vec<_> = (0..4).map(|_| Client::connect(addr)).collect();
    let batch: Vec<String> = (0..40).map(|i| format!("{i} ").repeat(60)).collect();
    for client in &mut clients {
        client.send_batch(&batch);
    }
    for client in &mut clients {
        for text in &batch {
            assert_eq!(client.recv(), Got::Text(text.clone()));
        }
    }
    // The scrape first: a count may still move (a late re-arm), never back.
    let text = server.handle().metrics_text();
    let stats = server.io_uring_stats();
    let exported = |name: &str| -> u64 {
        (0..2)
            .map(|index| {
                let prefix = format!("{name}_total{{loop=\"{index}\"}} ");
                let line = text.lines().find_map(|line| line.strip_prefix(&prefix));
                line.unwrap_or_else(|| panic!("no {prefix} in\n{text}")).parse::<u64>().unwrap()
            })
            .sum()
    };
    let no_buffers = exported("surge_io_uring_no_buffers");
    assert!(no_buffers > 0, "two buffers of 64 bytes ran dry:\n{text}");
    assert!(no_buffers <= stats.no_buffers, "{stats:?}");
    assert!(exported("surge_io_uring_rearms") <= stats.rearmed, "{stats:?}");
    assert!(exported("surge_io_uring_short_sends") <= stats.short_sends, "{stats:?}");
    assert!(exported("surge_io_uring_cq_overflows") <= stats.cq_overflows, "{stats:?}");
    assert!(exported("surge_io_uring_early_submits") <= stats.early_submits, "{stats:?}");
    server.shutdown(STOP);
}

/// A seccomp filter on this thread (inherited by the threads it starts, and by no other)
/// refuses `io_uring_setup` with EPERM, as container runtimes do.
fn refuse_io_uring_on_this_thread() {
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let filter = [
        // The syscall number: `seccomp_data.nr`, at offset 0.
        libc::sock_filter { code: LD_W_ABS, jt: 0, jf: 0, k: 0 },
        libc::sock_filter { code: JEQ_K, jt: 0, jf: 1, k: libc::SYS_io_uring_setup as u32 },
        libc::sock_filter { code: RET_K, jt: 0, jf: 0, k: RET_ERRNO | libc::EPERM as u32 },
        libc::sock_filter { code: RET_K, jt: 0, jf: 0, k: RET_ALLOW },
    ];
    let program = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr() as *mut _ };
    // SAFETY: prctl with these options reads only its integer arguments and, for
    // PR_SET_SECCOMP, the `sock_fprog` and the filter it points at, both alive on this frame
    // for the call. They change only this thread (and threads it starts from now on).
    #[allow(unsafe_code)]
    let (no_new_privs, seccomp) = unsafe {
        (
            libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0),
            libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program),
        )
    };
    assert_eq!((no_new_privs, seccomp), (0, 0), "the filter is installed");
}

#[test]
fn auto_falls_back_to_epoll_where_io_uring_is_refused() {
    thread::spawn(|| {
        refuse_io_uring_on_this_thread();
        let refused = Server::start(config(1).backend(Backend::IoUring).build().unwrap(), |_| {
            TestHandler { shared: Default::default() }
        })
        .unwrap_err();
        assert!(matches!(refused, ServerError::IoUring { .. }), "{refused}");
        assert_eq!(refused.to_string(), "cannot set up io_uring: permission denied");

        let (server, _) = start(config(1).backend(Backend::Auto).build().unwrap());
        assert_eq!(server.backend(), Backend::Epoll);
        let mut client = Client::connect(server.local_addrs()[0]);
        client.send_text("still served");
        assert_eq!(client.recv(), Got::Text("still served".into()));
        server.shutdown(STOP);
    })
    .join()
    .expect("the fall-back test passes");
}

#[test]
fn auto_chooses_io_uring_where_the_system_allows_it() {
    let (server, _) = start(config(1).backend(Backend::Auto).build().unwrap());
    // This machine runs io_uring (Linux 6.18); a CI host that refuses it falls back, which
    // the test above covers, so only an unexplained choice fails here.
    let allowed = Server::start(config(1).backend(Backend::IoUring).build().unwrap(), |_| {
        TestHandler { shared: Default::default() }
    });
    match allowed {
        Ok(explicit) => {
            assert_eq!(server.backend(), Backend::IoUring);
            explicit.shutdown(STOP);
        }
        Err(_) => assert_eq!(server.backend(), Backend::Epoll),
    }
    server.shutdown(STOP);
}
