mod actor;
mod fakes;
mod net;

use super::*;

#[test]
fn finds_programs() {
    assert!(find_program(std::path::Path::new("sh")).is_some());
    assert!(find_program(std::path::Path::new("/bin/sh")).is_some());
    assert!(find_program(std::path::Path::new("no-such-program-xyz")).is_none());
    let dir = tempfile::tempdir().expect("tmp");
    let f = dir.path().join("not-executable");
    std::fs::write(&f, "x").expect("write");
    assert!(find_program(&f).is_none());
    assert!(find_program(dir.path()).is_none(), "a directory");
}

#[test]
fn outcome_codes_and_phases() {
    assert_eq!(Outcome::Stopped.exit_code(), 0);
    let t = Outcome::CoreStopped {
        status: ServiceStatus::Terminating,
        reason: "r".into(),
    };
    assert_eq!((t.exit_code(), t.phase()), (3, Phase::Terminated));
    let s = Outcome::CoreStopped {
        status: ServiceStatus::Suspending,
        reason: "r".into(),
    };
    assert_eq!(s.phase(), Phase::Suspended);
    assert_eq!(Outcome::ServerHalted { reason: "h".into() }.exit_code(), 4);
}
