//! Becoming `--user`/`--group` (a worker) or `front.user` (the front), one way: the
//! supplementary groups (when root), the group, then the user, and the parent-death
//! signal armed again ([`crate::parent`]: a credential change clears it).

use nix::errno::Errno;
use nix::unistd::{geteuid, setgid, setgroups, setuid, Gid, Uid, User};

/// Whom to become; `None` keeps the current one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Account {
    pub uid: Option<Uid>,
    pub gid: Option<Gid>,
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("cannot look up user {name:?}: {source}")]
    LookUp { name: String, source: Errno },
    #[error("no such user {0:?}")]
    NoSuchUser(String),
    #[error("setgroups: {0}")]
    SetGroups(Errno),
    #[error("cannot switch to group {gid}: {source}")]
    SetGid { gid: Gid, source: Errno },
    #[error("cannot switch to user {uid}: {source}")]
    SetUid { uid: Uid, source: Errno },
    #[error(transparent)]
    Parent(#[from] crate::parent::ParentError),
}

impl Account {
    /// From the numbers the configuration resolved.
    pub fn from_ids(uid: Option<u32>, gid: Option<u32>) -> Account {
        Account {
            uid: uid.map(Uid::from_raw),
            gid: gid.map(Gid::from_raw),
        }
    }

    /// A user by name (or number), with its primary group.
    pub fn named(name: &str) -> Result<Account, PrivilegeError> {
        let found = match name.parse::<u32>() {
            Ok(uid) => User::from_uid(Uid::from_raw(uid)),
            Err(_) => User::from_name(name),
        }
        .map_err(|source| PrivilegeError::LookUp {
            name: name.to_string(),
            source,
        })?
        .ok_or_else(|| PrivilegeError::NoSuchUser(name.to_string()))?;
        Ok(Account {
            uid: Some(found.uid),
            gid: Some(found.gid),
        })
    }
}

/// Become `account` for good (before any app code or client byte).
pub fn switch(account: &Account) -> Result<(), PrivilegeError> {
    if let Some(gid) = account.gid {
        if geteuid().is_root() {
            setgroups(&[gid]).map_err(PrivilegeError::SetGroups)?;
        }
        setgid(gid).map_err(|source| PrivilegeError::SetGid { gid, source })?;
    }
    if let Some(uid) = account.uid {
        setuid(uid).map_err(|source| PrivilegeError::SetUid { uid, source })?;
    }
    crate::parent::rearm()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_by_name_and_number() {
        let by_name = Account::named("root").expect("root exists");
        assert_eq!(by_name.uid, Some(Uid::from_raw(0)));
        assert_eq!(Account::named("0").expect("uid 0").uid, by_name.uid);
        assert!(matches!(
            Account::named("no-such-user-here"),
            Err(PrivilegeError::NoSuchUser(_))
        ));
    }
}
