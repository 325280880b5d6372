//! sea-orm entities: the application's view of the tables `herald-migrations` creates.

macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}
        impl ActiveModelBehavior for ActiveModel {}
    };
}

pub mod user {
    use sea_orm::entity::prelude::*;

    use crate::domain::user::Role;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(unique)]
        pub username: String,
        pub display_name: String,
        pub password_hash: String,
        pub role: Role,
        pub area_code: String,
        pub disabled: bool,
        pub created_at: DateTimeUtc,
        /// Signed in with a password Herald generated: nothing else is allowed until the user
        /// chooses their own.
        pub must_change_password: bool,
    }
    no_relations!();
}

pub mod session {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "sessions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        pub user_id: String,
        pub created_at: DateTimeUtc,
        pub expires_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod api_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "api_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub user_id: String,
        pub name: String,
        #[sea_orm(unique)]
        pub token_hash: String,
        pub created_at: DateTimeUtc,
        pub revoked_at: Option<DateTimeUtc>,
    }
    no_relations!();
}

pub mod login_throttle {
    use sea_orm::entity::prelude::*;

    /// Failed logins counted under one key: an account, or an account from one client address.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "login_throttles")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub username: String,
        pub failures: i32,
        pub last_failure_at: DateTimeUtc,
        pub next_attempt_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod known_client {
    use sea_orm::entity::prelude::*;

    /// A client address an account signed in from with its password.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "known_clients")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub client: String,
        pub last_seen_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod item_attachment {
    use sea_orm::entity::prelude::*;

    /// An attachment named by any version of an item.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "item_attachments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub item_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub sha256: String,
    }
    no_relations!();
}

pub mod attachment {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "attachments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub sha256: String,
        pub content_type: String,
        pub size: i64,
        pub data: Vec<u8>,
        pub created_by: String,
        pub created_at: DateTimeUtc,
        /// Audio only: its decoded length, measured at upload; none for other files.
        pub audio_duration_ms: Option<i64>,
    }
    no_relations!();
}

pub mod item {
    use sea_orm::entity::prelude::*;

    use crate::domain::item::{Correcting, Disclosure, ItemState};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "items")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub state: ItemState,
        pub title: String,
        pub area_code: String,
        #[sea_orm(unique)]
        pub index_no: String,
        pub disclosure: Disclosure,
        pub emergency: bool,
        pub interprets_id: Option<String>,
        pub author_id: String,
        pub current_version: i32,
        pub approved_version: Option<i32>,
        pub approved_hash: Option<String>,
        pub published_version: Option<i32>,
        pub published_at: Option<DateTimeUtc>,
        pub withdrawn_at: Option<DateTimeUtc>,
        pub expires_at: Option<DateTimeUtc>,
        pub review_comment: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        /// A correction (更正) of the published item on its way through review: the item
        /// stays published, with its published version live, until the correction is approved.
        pub correcting: Option<Correcting>,
        /// What staff find the item by: title, 索引号, 发文字号 and 发文机关, folded
        /// (`ItemContent::search_key`).
        pub search_key: Option<String>,
    }
    no_relations!();
}

pub mod item_version {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "item_versions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub item_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i32,
        pub content: String,
        pub content_hash: String,
        pub created_by: String,
        pub created_at: DateTimeUtc,
        /// For a version that corrects a published one: what was corrected, as the public reads.
        pub correction_note: Option<String>,
    }
    no_relations!();
}

pub mod review {
    use sea_orm::entity::prelude::*;

    use crate::domain::review::ReviewKind;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "reviews")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub item_id: String,
        pub version: i32,
        pub content_hash: String,
        pub reviewer_id: String,
        pub kind: ReviewKind,
        pub comment: String,
        pub at: DateTimeUtc,
    }
    no_relations!();
}

pub mod publication {
    use sea_orm::entity::prelude::*;

    use crate::domain::ids::{ItemId, PublicationId};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "publications")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: PublicationId,
        pub item_id: ItemId,
        pub version: i32,
        pub content_hash: String,
        pub published_by: String,
        pub published_at: DateTimeUtc,
        pub channels: String,
        /// A correction (更正): the version it replaces and what was corrected.
        pub corrects_version: Option<i32>,
        pub correction_note: Option<String>,
    }
    no_relations!();
}

pub mod idempotency {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "idempotency")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub request_hash: String,
        pub response_status: i32,
        pub response_body: String,
        pub created_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod audit_entry {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub seq: i64,
        pub at: DateTimeUtc,
        pub actor: String,
        pub action: String,
        pub target_type: String,
        pub target_id: String,
        pub before_hash: Option<String>,
        pub after_hash: Option<String>,
        pub detail: String,
        pub prev_hash: String,
        pub row_hash: String,
        /// The area of the entry's target, for scoping who reads it; not part of the hash.
        pub area_code: Option<String>,
    }
    no_relations!();
}

pub mod audit_head {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_head")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub seq: i64,
        pub row_hash: String,
    }
    no_relations!();
}

pub mod target {
    use herald_channels::ChannelKind;
    use sea_orm::entity::prelude::*;

    use crate::domain::ids::TargetId;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "targets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: TargetId,
        pub channel: ChannelKind,
        pub name: String,
        pub area_code: String,
        pub catalogs: String,
        pub tags: String,
        pub config: String,
        pub enabled: bool,
        pub created_at: DateTimeUtc,
    }
    no_relations!();
}

/// A target's secret, sealed (see the secrets module); the plaintext is never stored.
pub mod target_secret {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "target_secrets")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub target_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub nonce: Vec<u8>,
        pub ciphertext: Vec<u8>,
    }
    no_relations!();
}

pub mod rendition {
    use sea_orm::entity::prelude::*;

    use crate::domain::delivery::RenditionFor;

    use crate::domain::ids::{PublicationId, RenditionId};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "renditions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: RenditionId,
        pub publication_id: PublicationId,
        pub channel: RenditionFor,
        pub payload: String,
        pub created_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod delivery {
    use herald_channels::ChannelKind;
    use sea_orm::entity::prelude::*;

    use crate::domain::delivery::{DeliveryKind, DeliveryState};

    use crate::domain::ids::{DeliveryId, ItemId, PublicationId, RenditionId, TargetId};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deliveries")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: DeliveryId,
        pub publication_id: PublicationId,
        pub item_id: ItemId,
        pub version: i32,
        pub target_id: TargetId,
        pub channel: ChannelKind,
        pub area_code: String,
        pub kind: DeliveryKind,
        pub state: DeliveryState,
        pub priority: i32,
        pub not_before: Option<DateTimeUtc>,
        pub not_after: Option<DateTimeUtc>,
        pub attempts: i32,
        pub next_attempt_at: DateTimeUtc,
        pub lease_owner: Option<String>,
        pub lease_expires_at: Option<DateTimeUtc>,
        pub external_id: Option<String>,
        pub last_error: Option<String>,
        pub rendition_id: RenditionId,
        pub idempotency_key: String,
        pub withdraws_id: Option<DeliveryId>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        /// JSON a multi-step send kept for its next attempt.
        pub checkpoint: Option<String>,
        /// A correction's delivery: the delivery of the earlier version it replaces on its target.
        pub supersedes_id: Option<DeliveryId>,
    }
    no_relations!();
}

/// A delivery the worker still has to act on: waiting for an attempt, or under way.
/// Kept apart from `deliveries` so moving a delivery through its states touches no index.
pub mod delivery_queue {
    use herald_channels::ChannelKind;
    use sea_orm::entity::prelude::*;

    use crate::domain::ids::DeliveryId;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "delivery_queue")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub delivery_id: DeliveryId,
        pub channel: ChannelKind,
        pub priority: i32,
        /// Its first or next attempt, never before its not_before.
        pub due_at: DateTimeUtc,
    }
    no_relations!();
}

/// An `accepted` delivery waiting for its report: when the channel is asked if none came.
pub mod delivery_confirmation {
    use sea_orm::entity::prelude::*;

    use crate::domain::ids::DeliveryId;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "delivery_confirmations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub delivery_id: DeliveryId,
        pub confirm_by: DateTimeUtc,
        /// How often the channel was asked about it.
        pub asks: i32,
    }
    no_relations!();
}

/// A signed device command, kept while it is valid so a device that was offline gets the same
/// frame when it comes back.
pub mod device_command {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "device_commands")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub frame: Vec<u8>,
        pub not_after: DateTimeUtc,
        pub created_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod wechat_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "wechat_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub app_id: String,
        pub nonce: Vec<u8>,
        pub ciphertext: Vec<u8>,
        pub expires_at: DateTimeUtc,
        pub renewed_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod cap_alert {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "cap_alerts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub sender: String,
        pub identifier: String,
        pub sent: DateTimeUtc,
        pub msg_type: String,
        pub item_id: Option<String>,
        pub posted_by: String,
        pub received_at: DateTimeUtc,
        /// The identifier of the Update or Cancel that took its place; it never goes out after.
        pub superseded_by: Option<String>,
    }
    no_relations!();
}

pub mod receipt {
    use sea_orm::entity::prelude::*;

    use crate::domain::ids::DeliveryId;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "receipts")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub delivery_id: DeliveryId,
        pub source: String,
        pub kind: String,
        pub source_time: Option<DateTimeUtc>,
        pub received_at: DateTimeUtc,
        pub digest: String,
        pub detail: String,
    }
    no_relations!();
}

pub mod callback_replay {
    use herald_channels::ChannelKind;
    use sea_orm::entity::prelude::*;

    /// A signed callback request already taken, refused if it comes again.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "callback_replays")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub channel: ChannelKind,
        #[sea_orm(primary_key, auto_increment = false)]
        pub target_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub replay_key: String,
        pub seen_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod portal_generation {
    use sea_orm::entity::prelude::*;

    /// One row: how many times what the portal shows has changed (migration 000019's triggers).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "portal_generation")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub generation: i64,
    }
    no_relations!();
}

pub mod portal_page {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "portal_pages")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub item_id: String,
        pub target_id: String,
        pub version: i32,
        pub title: String,
        pub payload: String,
        pub search_text: String,
        pub catalog: String,
        pub area_code: String,
        pub issuers: String,
        pub emergency: bool,
        pub published_at: DateTimeUtc,
        pub withdrawn_at: Option<DateTimeUtc>,
        pub withdraw_reason: Option<String>,
        /// What the page is found by, folded (`domain::search::fold`); none on a page written
        /// before search keys, until the hub fills it in on start.
        pub search_key: Option<String>,
    }
    no_relations!();
}

pub mod delivery_count {
    use herald_channels::ChannelKind;
    use sea_orm::entity::prelude::*;

    use crate::domain::delivery::{DeliveryKind, DeliveryState};

    use crate::domain::ids::ItemId;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "delivery_counts")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub item_id: ItemId,
        #[sea_orm(primary_key, auto_increment = false)]
        pub channel: ChannelKind,
        #[sea_orm(primary_key, auto_increment = false)]
        pub kind: DeliveryKind,
        #[sea_orm(primary_key, auto_increment = false)]
        pub state: DeliveryState,
        pub n: i64,
    }
    no_relations!();
}

/// A verified inbound receipt, stored before it is answered and applied later by the
/// delivery inbox.
pub mod receipt_inbox {
    use sea_orm::entity::prelude::*;

    use crate::domain::{delivery::DeliveryState, ids::DeliveryId};

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "receipt_inbox")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub channel: herald_channels::ChannelKind,
        pub target_id: String,
        pub dedup: String,
        pub correlation_by: String,
        pub correlation: String,
        pub status: String,
        pub detail: String,
        pub source_time: Option<DateTimeUtc>,
        pub raw: String,
        pub received_at: DateTimeUtc,
        pub due_at: DateTimeUtc,
        pub applied_at: Option<DateTimeUtc>,
        pub outcome: Option<String>,
        /// The delivery it was applied to (applied or unchanged): it is then part of that
        /// delivery's record, beside the worker's own receipts.
        pub delivery_id: Option<DeliveryId>,
        /// The state applying it moved the delivery to; none when it changed nothing.
        pub moved_to: Option<DeliveryState>,
    }
    no_relations!();
}

pub mod device {
    use sea_orm::entity::prelude::*;

    use crate::domain::ids::TargetId;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "devices")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub target_id: TargetId,
        pub device_id: String,
        pub group_name: String,
        pub credential_hash: String,
        pub broker_hash: String,
        pub credential_issued_at: DateTimeUtc,
        pub key_id: Option<i64>,
        pub public_key: Option<String>,
        pub revoked_at: Option<DateTimeUtc>,
        pub capabilities: Option<String>,
        pub firmware_version: Option<String>,
        pub health: Option<String>,
        pub last_seen_at: Option<DateTimeUtc>,
        /// From its retained status and will; `None` until it first reports.
        pub online: Option<bool>,
        pub created_at: DateTimeUtc,
    }
    no_relations!();
}

pub mod organ {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "organs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(unique)]
        pub name: String,
        pub area_code: Option<String>,
        /// Set when the organ was retired (机构改革): new items cannot name it.
        pub retired_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }
    no_relations!();
}

/// Every name and alias of the organ list, each once: the primary key keeps a spelling to one
/// organ.
pub mod organ_spelling {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "organ_spellings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub spelling: String,
        pub organ_id: String,
        pub is_alias: bool,
    }
    no_relations!();
}
