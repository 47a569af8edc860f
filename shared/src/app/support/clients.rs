//! The AWS KMS client of a group, cached by the etag of the settings it was made from.

use std::sync::Arc;

use crate::app::Keyward;
use crate::domain::{Group, GroupId};
use crate::kms::{Kms, Purpose};
use crate::{Error, Precondition, Result};

impl Keyward {
    /// The client of an AWS_KMS group (FAILED_PRECONDITION for a REGULAR group). Work clients
    /// are cached while the group's settings (its etag) stay the same; probes are not.
    pub(crate) fn connect(&self, group: &Group, purpose: Purpose) -> Result<Arc<dyn Kms>> {
        let Some(cfg) = &group.aws_kms else {
            return Err(Error::precondition(
                Precondition::NotAwsKmsGroup,
                format!("groups/{}", group.id),
                format!("groups/{} is not an AWS_KMS group", group.id),
            ));
        };
        if let Some(setting) = cfg.unopened.first() {
            let name = format!("groups/{}", group.id);
            return Err(Error::precondition(
                Precondition::SealedValue,
                name.clone(),
                format!(
                    "the stored {setting} of {name} does not open under the master keyring (damaged, or sealed under a master key Keyward was not given): set it again with UpdateGroup, or start Keyward with that master key too"
                ),
            ));
        }
        if purpose == Purpose::Probe {
            return Ok(self.kms.connect(cfg, purpose)?);
        }
        if let Ok(cache) = self.clients.lock()
            && let Some((etag, client)) = cache.get(&group.id)
            && *etag == group.etag
        {
            return Ok(client.clone());
        }
        let client = self.kms.connect(cfg, purpose)?;
        if let Ok(mut cache) = self.clients.lock() {
            cache.insert(group.id, (group.etag.clone(), client.clone()));
        }
        Ok(client)
    }

    /// The work client of the group with id `id`.
    pub(crate) async fn group_client(&self, id: GroupId) -> Result<Arc<dyn Kms>> {
        let group = self.store.get_group(id).await?;
        self.connect(&group, Purpose::Work)
    }
}
