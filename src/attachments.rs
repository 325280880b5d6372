//! Attachments, stored once per content (keyed by SHA-256) in the database so that hub
//! instances share them without a shared disk.

use std::collections::HashMap;

use herald_channels::ChannelKind;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, PaginatorTrait,
    QueryFilter, QuerySelect, QueryTrait, Set, sea_query::OnConflict,
};
use serde::Serialize;

use crate::{
    accounts::Caller,
    domain::{
        audio,
        delivery::DeliveryKind,
        item::{AttachmentRef, ItemState, sha256_hex},
    },
    error::{Error, Result},
    hub::Hub,
    store::{
        begin_write,
        entities::{attachment, delivery, item, item_attachment, rendition},
    },
};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttachmentView {
    pub sha256: String,
    pub content_type: String,
    pub size: i64,
    /// Audio only: its decoded length in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audio_duration_ms: Option<i64>,
}

/// Whether the bytes look like what the declared type says. Types without a signature (plain
/// text) are checked for what they must be instead.
fn content_matches(content_type: &str, data: &[u8]) -> bool {
    let zip = data.starts_with(b"PK\x03\x04");
    let ole = data.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]);
    match content_type {
        "application/pdf" => data.starts_with(b"%PDF-"),
        "image/png" => data.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => data.starts_with(&[0xFF, 0xD8, 0xFF]),
        "audio/mpeg" => {
            data.starts_with(b"ID3") || (data.len() > 1 && data[0] == 0xFF && data[1] & 0xE0 == 0xE0)
        }
        "audio/wav" => data.len() >= 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WAVE",
        // ADTS: a 12-bit frame sync, layer 0.
        "audio/aac" => data.len() > 1 && data[0] == 0xFF && data[1] & 0xF6 == 0xF0,
        "application/msword" | "application/vnd.ms-excel" => ole,
        "application/ofd"
        | "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        | "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => zip,
        "text/plain" => std::str::from_utf8(data).is_ok(),
        _ => true,
    }
}

pub async fn upload(hub: &Hub, caller: &Caller, declared_type: &str, data: &[u8]) -> Result<AttachmentView> {
    let content_type = declared_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let settings = &hub.settings.content;
    if !settings
        .attachment_types
        .iter()
        .any(|allowed| allowed == &content_type)
    {
        return Err(Error::validation(
            "content_type",
            format!(
                "attachments of type `{content_type}` are not accepted; allowed: {}",
                settings.attachment_types.join(", ")
            ),
        ));
    }
    if data.is_empty() {
        return Err(Error::validation("body", "the attachment is empty"));
    }
    if data.len() > settings.max_attachment_bytes {
        return Err(Error::validation(
            "body",
            format!(
                "the attachment is {} bytes; the limit is {}",
                data.len(),
                settings.max_attachment_bytes
            ),
        ));
    }
    if !content_matches(&content_type, data) {
        return Err(Error::validation(
            "content_type",
            format!("the file's content is not {content_type}"),
        ));
    }
    let audio_duration_ms = match audio::codec_of(&content_type) {
        Some(_) => Some(decoded_length(&content_type, data).await?),
        None => None,
    };
    let sha256 = sha256_hex(data);
    let size = i64::try_from(data.len()).map_err(anyhow::Error::new)?;
    let txn = begin_write(&hub.db).await?;
    let stored = attachment::Entity::find_by_id(&sha256).one(&txn).await?;
    if let Some(stored) = stored {
        // The same bytes, uploaded before audio was decoded at upload: its length is known now.
        if stored.audio_duration_ms.is_none() && audio_duration_ms.is_some() {
            let mut known: attachment::ActiveModel = stored.into();
            known.audio_duration_ms = Set(audio_duration_ms);
            known.update(&txn).await?;
        }
    } else {
        attachment::ActiveModel {
            sha256: Set(sha256.clone()),
            content_type: Set(content_type.clone()),
            size: Set(size),
            data: Set(data.to_vec()),
            created_by: Set(caller.id.clone()),
            created_at: Set(hub.clock.now()),
            audio_duration_ms: Set(audio_duration_ms),
        }
        .insert(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(AttachmentView {
        sha256,
        content_type,
        size,
        audio_duration_ms,
    })
}

/// Decodes an audio upload whole (on a blocking thread: a long MP3 takes seconds of CPU) and
/// returns its length in milliseconds; a file a loudspeaker could not play is refused.
async fn decoded_length(content_type: &str, data: &[u8]) -> Result<i64> {
    let (content_type, data) = (content_type.to_owned(), data.to_vec());
    let facts = tokio::task::spawn_blocking(move || audio::inspect(&content_type, &data))
        .await
        .map_err(anyhow::Error::new)?
        .map_err(|e| Error::validation("body", e.to_string()))?;
    Ok(i64::try_from(facts.duration_ms).map_err(anyhow::Error::new)?)
}

/// What channels are told of an attachment (never its bytes).
pub struct AttachmentFacts {
    pub content_type: String,
    pub size: i64,
    /// Audio decoded at upload: its length.
    pub audio_duration_ms: Option<i64>,
}

/// The facts of the attachments `sha256s`, by SHA-256.
pub async fn facts(db: &impl ConnectionTrait, sha256s: &[&str]) -> Result<HashMap<String, AttachmentFacts>> {
    if sha256s.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(String, String, i64, Option<i64>)> = attachment::Entity::find()
        .select_only()
        .column(attachment::Column::Sha256)
        .column(attachment::Column::ContentType)
        .column(attachment::Column::Size)
        .column(attachment::Column::AudioDurationMs)
        .filter(attachment::Column::Sha256.is_in(sha256s.iter().copied()))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(sha256, content_type, size, audio_duration_ms)| {
            let facts = AttachmentFacts {
                content_type,
                size,
                audio_duration_ms,
            };
            (sha256, facts)
        })
        .collect())
}

/// An audio file as village loudspeakers download it, without signing in (a device holds no
/// account; the command that names the file is signed and pins its hash and size): only while
/// the published version of an item was sent to loudspeakers as this recording. A withdrawn or
/// expired item's recording, a file only a draft named, or a second audio attachment that was
/// never sent cannot be fetched.
pub async fn for_loudspeakers(hub: &Hub, sha256: &str) -> Result<Option<attachment::Model>> {
    let naming: Vec<String> = item_attachment::Entity::find()
        .select_only()
        .column(item_attachment::Column::ItemId)
        .filter(item_attachment::Column::Sha256.eq(sha256))
        .into_tuple()
        .all(&hub.db)
        .await?;
    let published: Vec<(String, Option<i32>)> = item::Entity::find()
        .select_only()
        .column(item::Column::Id)
        .column(item::Column::PublishedVersion)
        .filter(item::Column::Id.is_in(naming))
        .filter(item::Column::State.eq(ItemState::Published))
        .into_tuple()
        .all(&hub.db)
        .await?;
    // The rendition names the recording by hash (`Announcement::recording`).
    let pinned = format!("\"sha256\":\"{sha256}\"");
    for (item_id, version) in published {
        let Some(version) = version else { continue };
        let sent_as: Vec<String> = delivery::Entity::find()
            .select_only()
            .column(delivery::Column::RenditionId)
            .distinct()
            .filter(delivery::Column::ItemId.eq(item_id.as_str()))
            .filter(delivery::Column::Version.eq(version))
            .filter(delivery::Column::Channel.eq(ChannelKind::Loudspeaker))
            .filter(delivery::Column::Kind.eq(DeliveryKind::Publish))
            .into_tuple()
            .all(&hub.db)
            .await?;
        let sent = rendition::Entity::find()
            .filter(rendition::Column::Id.is_in(sent_as))
            .filter(rendition::Column::Payload.contains(&pinned))
            .count(&hub.db)
            .await?;
        if sent > 0 {
            return Ok(attachment::Entity::find_by_id(sha256).one(&hub.db).await?);
        }
    }
    Ok(None)
}

/// The WeChat adapter's body images, read from the store.
pub struct StoredImages {
    pub db: sea_orm::DatabaseConnection,
}

#[async_trait::async_trait]
impl herald_channels::wechat::adapter::BodyImages for StoredImages {
    async fn image(&self, sha256: &str) -> std::result::Result<Option<(String, Vec<u8>)>, String> {
        let stored = attachment::Entity::find_by_id(sha256)
            .one(&self.db)
            .await
            .map_err(|e| e.to_string())?;
        Ok(stored.map(|file| (file.content_type, file.data)))
    }
}

/// An attachment the caller may read: one named by an item they may see (any version of it),
/// or one they uploaded that no item names yet. Anything else answers as if it did not exist.
pub async fn download(hub: &Hub, caller: &Caller, sha256: &str) -> Result<attachment::Model> {
    let file = attachment::Entity::find_by_id(sha256)
        .one(&hub.db)
        .await?
        .ok_or(Error::NotFound("attachment"))?;
    let naming_items = || {
        item_attachment::Entity::find()
            .select_only()
            .column(item_attachment::Column::ItemId)
            .filter(item_attachment::Column::Sha256.eq(sha256))
            .into_query()
    };
    let visible = item::Entity::find()
        .filter(item::Column::Id.in_subquery(naming_items()))
        .filter(item::Column::AreaCode.starts_with(caller.area.as_str()))
        .count(&hub.db)
        .await?
        > 0;
    let own_and_unreferenced = file.created_by == caller.id
        && item_attachment::Entity::find()
            .filter(item_attachment::Column::Sha256.eq(sha256))
            .count(&hub.db)
            .await?
            == 0;
    if visible || own_and_unreferenced {
        Ok(file)
    } else {
        Err(Error::NotFound("attachment"))
    }
}

/// Records which attachments a new version of an item names, so access to them follows the item.
pub async fn link_to_item(
    txn: &DatabaseTransaction,
    item_id: &str,
    attachments: &[AttachmentRef],
) -> Result<()> {
    let rows: Vec<_> = attachments
        .iter()
        .map(|a| item_attachment::ActiveModel {
            item_id: Set(item_id.to_owned()),
            sha256: Set(a.sha256.clone()),
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    item_attachment::Entity::insert_many(rows)
        .on_conflict(
            OnConflict::columns([item_attachment::Column::ItemId, item_attachment::Column::Sha256])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(())
}
