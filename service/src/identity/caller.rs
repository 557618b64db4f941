use std::{fmt, str::FromStr};

use crate::error::{ServiceError, ServiceResult};

/// Roles of an API key, from most to least powerful.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything within its tenant, including API keys and deactivation.
    Admin,
    /// Connect, refresh and disconnect accounts; read access tokens.
    Integrator,
    /// Read only.
    Viewer,
}

impl Role {
    /// The stored and displayed name (`ADMIN`, `INTEGRATOR`, `VIEWER`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::Integrator => "INTEGRATOR",
            Role::Viewer => "VIEWER",
        }
    }

    fn rank(self) -> u8 {
        match self {
            Role::Admin => 3,
            Role::Integrator => 2,
            Role::Viewer => 1,
        }
    }

    /// Whether this role includes everything `required` may do.
    pub fn includes(self, required: Role) -> bool {
        self.rank() >= required.rank()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ServiceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "ADMIN" => Ok(Role::Admin),
            "INTEGRATOR" => Ok(Role::Integrator),
            "VIEWER" => Ok(Role::Viewer),
            _ => Err(ServiceError::bad_input(format!(
                "unknown role {s:?}: expected ADMIN, INTEGRATOR or VIEWER"
            ))),
        }
    }
}

/// Who did something, as written to the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// `None` only for deployment-wide actions.
    pub tenant_id: Option<i64>,
    /// `api_key:<id>`, `cli`, `bootstrap` or `system`.
    pub name: String,
    /// The client address of the HTTP request, if any.
    pub client_ip: Option<String>,
}

impl Actor {
    /// An actor for work the service does by itself (jobs, startup).
    pub fn system(tenant_id: Option<i64>, name: &str) -> Self {
        Self {
            tenant_id,
            name: name.to_owned(),
            client_ip: None,
        }
    }
}

/// An authenticated API caller. Every tenant-owned query filters by `tenant_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub tenant_id: i64,
    pub role: Role,
    pub api_key_id: i64,
    pub client_ip: Option<String>,
}

impl Caller {
    /// Fails with `Forbidden` unless the caller's role includes `required`.
    pub fn require(&self, required: Role) -> ServiceResult<()> {
        if self.role.includes(required) {
            Ok(())
        } else {
            Err(ServiceError::Forbidden(format!(
                "this operation requires the {required} role; your key has {}",
                self.role
            )))
        }
    }

    /// The audit-log actor for this caller.
    pub fn actor(&self) -> Actor {
        Actor {
            tenant_id: Some(self.tenant_id),
            name: format!("api_key:{}", self.api_key_id),
            client_ip: self.client_ip.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin.includes(Role::Integrator));
        assert!(Role::Integrator.includes(Role::Viewer));
        assert!(!Role::Viewer.includes(Role::Integrator));
        assert!(!Role::Integrator.includes(Role::Admin));
    }

    #[test]
    fn role_parses_case_insensitively_and_rejects_unknown() {
        assert_eq!("viewer".parse::<Role>().ok(), Some(Role::Viewer));
        assert!(matches!(
            "root".parse::<Role>(),
            Err(ServiceError::BadInput(_))
        ));
    }

    #[test]
    fn viewer_is_forbidden_admin_work() {
        let caller = Caller {
            tenant_id: 1,
            role: Role::Viewer,
            api_key_id: 7,
            client_ip: None,
        };
        assert!(matches!(
            caller.require(Role::Admin),
            Err(ServiceError::Forbidden(_))
        ));
        assert_eq!(caller.actor().name, "api_key:7");
    }
}
