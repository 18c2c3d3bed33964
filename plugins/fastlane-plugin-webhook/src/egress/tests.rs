//! The egress policy's unit tests: which addresses and host names each
//! setting lets a webhook reach, and how names that resolve are checked.

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

fn closed() -> EgressPolicy {
    EgressPolicy::new::<&str>(false, &[]).expect("policy")
}

#[test]
fn link_local_and_metadata_addresses_are_refused_even_when_the_local_network_is_allowed() {
    let open = EgressPolicy::new(true, &["169.254.169.254", "fe80::/10"]).expect("policy");
    for address in [
        "169.254.169.254",
        "169.254.0.1",
        "fe80::1",
        "febf::1",
        "fd00:ec2::254",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "::169.254.169.254",
    ] {
        assert_eq!(classify(ip(address)), AddressClass::Forbidden, "{address}");
        assert!(
            matches!(
                open.check_addr(None, ip(address)),
                Err(Refusal::Forbidden { .. })
            ),
            "{address}"
        );
    }
}

#[test]
fn local_ranges_are_refused_by_default_and_public_ones_allowed() {
    for address in [
        "127.0.0.1",
        "127.1.2.3",
        "10.1.2.3",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "100.127.255.254",
        "0.0.0.0",
        "0.1.2.3",
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
    ] {
        let refused = closed().check_addr(None, ip(address));
        assert!(
            matches!(refused, Err(Refusal::Local { .. })),
            "{address}: {refused:?}"
        );
    }
    for address in [
        "8.8.8.8",
        "172.32.0.1",
        "100.128.0.1",
        "169.253.255.255",
        "2001:4860:4860::8888",
        "fe00::1",
    ] {
        assert_eq!(closed().check_addr(None, ip(address)), Ok(()), "{address}");
    }
}

#[test]
fn the_local_network_is_allowed_by_the_switch_or_by_listing() {
    let open = EgressPolicy::new::<&str>(true, &[]).expect("policy");
    assert_eq!(open.check_addr(None, ip("127.0.0.1")), Ok(()));
    assert_eq!(open.check_addr(Some("db"), ip("10.0.0.7")), Ok(()));

    let listed = EgressPolicy::new(
        false,
        &EgressPolicy::split_list(" hooks.internal. , 10.1.0.0/16,192.168.7.7, [::1]"),
    )
    .expect("policy");
    assert_eq!(
        listed.check_addr(Some("Hooks.Internal"), ip("10.9.9.9")),
        Ok(())
    );
    assert_eq!(listed.check_addr(None, ip("10.1.200.3")), Ok(()));
    assert_eq!(
        listed.check_addr(None, ip("::ffff:10.1.200.3")),
        Ok(()),
        "the mapped form of a listed address"
    );
    assert_eq!(listed.check_addr(None, ip("192.168.7.7")), Ok(()));
    assert_eq!(listed.check_addr(None, ip("::1")), Ok(()));
    assert!(listed.check_addr(None, ip("10.2.0.1")).is_err());
    assert!(listed.check_addr(Some("other"), ip("192.168.7.8")).is_err());
    assert!(listed.check_addr(None, ip("127.0.0.1")).is_err());
}

#[test]
fn bad_allowed_entries_are_named() {
    for entry in ["10.0.0.0/33", "::/129", "x/8", "a b", "http://h/"] {
        let err = EgressPolicy::new(false, &[entry]).expect_err(entry);
        assert_eq!(err.entry, entry);
        assert!(err.to_string().contains(ALLOWED_HOSTS_KEY), "{err}");
    }
}

#[test]
fn urls_with_literal_addresses_are_checked_and_names_left_to_resolution() {
    let refused = closed()
        .check_url("http://169.254.169.254/latest/meta-data/")
        .expect_err("metadata");
    assert!(refused.to_string().contains("169.254.169.254"), "{refused}");
    assert!(closed().check_url("http://[fe80::1]/").is_err());
    let local = closed()
        .check_url("http://127.0.0.1:8080/hook")
        .expect_err("loopback")
        .to_string();
    assert!(
        local.contains("127.0.0.1") && local.contains(ALLOW_LOCAL_NETWORK_KEY),
        "{local}"
    );
    assert!(
        closed().check_url("http://0x7f.1/").is_err(),
        "odd IPv4 spellings"
    );
    assert!(closed().check_url("http://[::ffff:7f00:1]/").is_err());
    assert_eq!(closed().check_url("https://example.com/hook"), Ok(()));
    assert_eq!(closed().check_url("http://localhost:1/"), Ok(()));
    assert_eq!(closed().check_url("http://93.184.216.34/"), Ok(()));
    assert!(closed().check_url("ftp://example.com/").is_err());
    assert!(closed().check_url("nope").is_err());
}

#[test]
fn refusals_name_the_host_they_were_resolved_from() {
    let refused = closed()
        .check_addr(Some("localhost"), ip("127.0.0.1"))
        .expect_err("loopback");
    let text = refused.to_string();
    assert!(text.contains("127.0.0.1 (of localhost)"), "{text}");
    assert!(text.contains(ALLOWED_HOSTS_KEY), "{text}");
}
