//! Roles and permissions for admin actions: a deny-by-default table.

/// What an actor is. Ordered: every permission of a role is also a permission of every higher role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A customer of the bot.
    User,
    /// Support staff: money corrections, refunds, bans.
    Admin,
    /// The operator: everything, including who is an admin.
    Owner,
}

/// Something an actor may be allowed to do. `Own*` permissions cover only the actor's own account or jobs;
/// the caller MUST check that the target belongs to the actor before relying on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// See one's own balance and history.
    ViewOwnBalance,
    /// Cancel one's own queued job.
    CancelOwnJob,
    /// See any user's balance and history.
    ViewAnyBalance,
    /// Credit or debit a user's balance by hand.
    AdjustBalance,
    /// Refund a payment or a job.
    Refund,
    /// Cancel any user's job.
    CancelAnyJob,
    /// Ban or unban a user.
    BanUser,
    /// Grant or revoke the admin role.
    ManageRoles,
    /// Read the audit log.
    ViewAudit,
}

impl Permission {
    /// Every permission, for exhaustive checks.
    pub const ALL: [Permission; 9] = [
        Permission::ViewOwnBalance,
        Permission::CancelOwnJob,
        Permission::ViewAnyBalance,
        Permission::AdjustBalance,
        Permission::Refund,
        Permission::CancelAnyJob,
        Permission::BanUser,
        Permission::ManageRoles,
        Permission::ViewAudit,
    ];
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::User, Role::Admin, Role::Owner];

    /// Whether this role may do `permission`. Anything not granted here is denied, so a new permission is
    /// refused to users and admins until it is added to their list.
    #[must_use]
    pub fn permits(self, permission: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Owner => true,
            Role::Admin => matches!(
                permission,
                P::ViewOwnBalance
                    | P::CancelOwnJob
                    | P::ViewAnyBalance
                    | P::AdjustBalance
                    | P::Refund
                    | P::CancelAnyJob
                    | P::BanUser
                    | P::ViewAudit
            ),
            Role::User => matches!(permission, P::ViewOwnBalance | P::CancelOwnJob),
        }
    }
}

/// An actor tried something its role does not permit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("role {role:?} may not {permission:?}")]
pub struct Forbidden {
    /// The actor's role.
    pub role: Role,
    /// What it tried.
    pub permission: Permission,
}

/// Checks that `actor_role` may do `permission`.
///
/// # Errors
/// [`Forbidden`] when the table does not grant it.
pub fn authorize(actor_role: Role, permission: Permission) -> Result<(), Forbidden> {
    if actor_role.permits(permission) { Ok(()) } else { Err(Forbidden { role: actor_role, permission }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_policy() {
        // Proves owners may do everything, admins all but role management, users only their own things.
        for p in Permission::ALL {
            assert!(Role::Owner.permits(p));
            assert_eq!(Role::Admin.permits(p), p != Permission::ManageRoles, "{p:?}");
        }
        let user: Vec<_> = Permission::ALL.into_iter().filter(|p| Role::User.permits(*p)).collect();
        assert_eq!(user, [Permission::ViewOwnBalance, Permission::CancelOwnJob]);
        assert_eq!(
            authorize(Role::Admin, Permission::ManageRoles),
            Err(Forbidden { role: Role::Admin, permission: Permission::ManageRoles })
        );
        assert_eq!(authorize(Role::Admin, Permission::Refund), Ok(()));
    }

    #[test]
    fn higher_roles_permit_a_superset() {
        // Proves the role order is meaningful: whatever a role may do, every higher role may do too.
        for (lo, hi) in Role::ALL.iter().zip(&Role::ALL[1..]) {
            assert!(lo < hi);
            for p in Permission::ALL {
                assert!(!lo.permits(p) || hi.permits(p), "{hi:?} lacks {p:?} that {lo:?} has");
            }
        }
    }
}
