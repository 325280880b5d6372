//! 新建信息: the compose form, once, for every channel.

use actix_multipart::{Field, Multipart};
use futures::StreamExt;

use super::*;
use crate::{attachments, domain::item::AttachmentRef, workflow::deadline_after};

/// Files one compose form may carry: an item's attachments are a handful of documents.
const MAX_FILES: usize = 10;

/// What the compose form holds, as typed: shown again as it was when something is refused.
#[derive(Default)]
struct ComposeForm {
    csrf: String,
    title: String,
    summary: String,
    body: String,
    index_no: String,
    doc_no: String,
    confirm_duplicate_doc_no: Option<String>,
    written_date: String,
    issuers: String,
    genre: String,
    topic: String,
    catalog: String,
    area_code: String,
    validity: String,
    expires_on: String,
    emergency: Option<String>,
    disclosure: String,
    legal_reason: String,
    redacted_body: String,
    /// For a policy interpretation (解读): the id of the policy it explains.
    interprets: String,
    /// Files uploaded with an earlier post of this form (`sha256/filename`), kept while the
    /// form is corrected; unticking one drops it.
    attachment: Vec<String>,
}

impl ComposeForm {
    /// A text field of the posted form by its name; a name the form does not have is ignored,
    /// as a urlencoded form's would be.
    fn set(&mut self, name: &str, value: String) {
        let field = match name {
            "csrf" => &mut self.csrf,
            "title" => &mut self.title,
            "summary" => &mut self.summary,
            "body" => &mut self.body,
            "index_no" => &mut self.index_no,
            "doc_no" => &mut self.doc_no,
            "written_date" => &mut self.written_date,
            "issuers" => &mut self.issuers,
            "genre" => &mut self.genre,
            "topic" => &mut self.topic,
            "catalog" => &mut self.catalog,
            "area_code" => &mut self.area_code,
            "validity" => &mut self.validity,
            "expires_on" => &mut self.expires_on,
            "disclosure" => &mut self.disclosure,
            "legal_reason" => &mut self.legal_reason,
            "redacted_body" => &mut self.redacted_body,
            "interprets" => &mut self.interprets,
            "confirm_duplicate_doc_no" => return self.confirm_duplicate_doc_no = Some(value),
            "emergency" => return self.emergency = Some(value),
            "attachment" => return self.attachment.push(value),
            _ => return,
        };
        *field = value;
    }

    /// The attachments the form holds, as the item names them.
    fn attachments(&self) -> Result<Vec<AttachmentRef>, Error> {
        self.attachment
            .iter()
            .map(|kept| match kept.split_once('/') {
                Some((sha256, filename)) => Ok(AttachmentRef {
                    sha256: sha256.to_owned(),
                    filename: filename.to_owned(),
                }),
                None => Err(Error::validation("attachments", "not an uploaded file")),
            })
            .collect()
    }
}

/// A file of the form, for the page: its name, and what the form posts to keep it.
struct KeptFile {
    filename: String,
    kept: String,
}

/// A published policy an interpretation may explain, with the day its interpretation is due.
struct PolicyChoice {
    id: String,
    label: String,
    selected: bool,
}

#[derive(Template)]
#[template(path = "console/compose.html")]
struct ComposePage {
    frame: Frame,
    form: ComposeForm,
    problem: Option<String>,
    /// The field the problem is about, marked in the form.
    invalid: String,
    index_no_example: String,
    genres: Vec<Choice>,
    topics: Vec<Choice>,
    catalog: Vec<Choice>,
    areas: Vec<Choice>,
    validities: Vec<Choice>,
    disclosures: Vec<Choice>,
    policies: Vec<PolicyChoice>,
    files: Vec<KeptFile>,
    max_attachment_mb: usize,
}

async fn compose_page_for(
    hub: &Hub,
    caller: &Caller,
    csrf: String,
    form: ComposeForm,
    problem: Option<(String, String)>,
) -> Result<ComposePage, Error> {
    let topics = hub.topics.classes().iter().flat_map(|class| {
        std::iter::once(class.name.clone()).chain(
            class
                .entries
                .iter()
                .map(|entry| format!("{}\\{entry}", class.name)),
        )
    });
    let (problem, invalid) = problem_parts(problem);
    // Published documents of the caller's area, newest first: those an interpretation may follow.
    let published = workflow::list_items(
        hub,
        caller,
        ItemFilter {
            state: Some(ItemState::Published),
            kind: Some(crate::items::ItemKind::Document),
            limit: Some(100),
            ..ItemFilter::default()
        },
    )
    .await?;
    let policies = published
        .items
        .into_iter()
        .filter_map(|policy| {
            let published_at = policy.published_at?;
            Some(PolicyChoice {
                selected: policy.id == form.interprets,
                label: format!(
                    "{}（{} 发布，解读应于 {} 前发布）",
                    policy.title,
                    crate::clock::china_date(published_at).format("%Y-%m-%d"),
                    deadline_after(hub, published_at).format("%Y-%m-%d")
                ),
                id: policy.id,
            })
        })
        .collect();
    let files = form
        .attachment
        .iter()
        .map(|kept| KeptFile {
            filename: kept
                .split_once('/')
                .map_or(kept.as_str(), |(_, name)| name)
                .to_owned(),
            kept: kept.clone(),
        })
        .collect();
    Ok(ComposePage {
        policies,
        files,
        max_attachment_mb: hub.settings.content.max_attachment_bytes / (1024 * 1024),
        frame: frame_for(hub, caller, csrf),
        problem,
        invalid,
        index_no_example: format!(
            "{}/{}-00001",
            hub.settings.content.organisation_code,
            hub.clock.now().with_timezone(&china_offset()).format("%Y")
        ),
        genres: choices(
            Genre::ALL,
            if form.genre.is_empty() {
                "notice"
            } else {
                &form.genre
            },
            |g| (wire_name(g), g.label_zh().to_owned()),
        ),
        topics: choices(topics, &form.topic, |t| (t.clone(), t.clone())),
        catalog: choices(hub.catalog.iter(), &form.catalog, |entry| {
            (entry.code.clone(), format!("{}（{}）", entry.name, entry.code))
        }),
        areas: area_choices(hub, caller, &form.area_code),
        validities: choices(Validity::ALL, &form.validity, |v| {
            (wire_name(v), v.label_zh().to_owned())
        }),
        disclosures: choices(
            Disclosure::ALL.iter().copied(),
            if form.disclosure.is_empty() {
                "public"
            } else {
                &form.disclosure
            },
            |d| (d.as_str().to_owned(), disclosure_label(*d).to_owned()),
        ),
        form,
    })
}

fn date(field: &str, raw: &str) -> Result<chrono::NaiveDate, Error> {
    chrono::NaiveDate::parse_from_str(raw.trim(), "%Y-%m-%d")
        .map_err(|_| Error::validation(field, "must be a date, YYYY-MM-DD"))
}

/// The form as the API's item input; a field that cannot be read is refused naming it.
fn item_input(form: &ComposeForm) -> Result<ItemInput, Error> {
    Ok(ItemInput {
        title: form.title.trim().to_owned(),
        body: form.body.clone(),
        summary: form.summary.trim().to_owned(),
        disclosure: by_wire_name("disclosure", &form.disclosure)?,
        redacted_body: optional(&form.redacted_body),
        legal_reason: optional(&form.legal_reason),
        index_no: form.index_no.trim().to_owned(),
        issuers: form
            .issuers
            .split(['、', ',', '，', ';', '；', '\n'])
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect(),
        doc_no: optional(&form.doc_no),
        written_date: date("written_date", &form.written_date)?,
        topic: optional(&form.topic).into_iter().collect(),
        validity: match optional(&form.validity) {
            Some(raw) => Some(by_wire_name("validity", &raw)?),
            None => None,
        },
        genre: by_wire_name("genre", &form.genre)?,
        keywords: Vec::new(),
        catalog: form.catalog.clone(),
        area_code: form.area_code.clone(),
        tags: Vec::new(),
        attachments: form.attachments()?,
        emergency: form.emergency.is_some(),
        expires_on: match optional(&form.expires_on) {
            Some(raw) => Some(date("expires_on", &raw)?),
            None => None,
        },
        interprets: optional(&form.interprets),
        confirm_duplicate_doc_no: form.confirm_duplicate_doc_no.is_some(),
        correction_note: None,
    })
}

pub(super) async fn compose_page(req: HttpRequest, Staff { hub, caller }: Staff) -> Page {
    if !caller.role.may_author() {
        return message(&hub, StatusCode::FORBIDDEN, "无权新建", "您的角色不能新建信息。");
    }
    let (csrf, cookie) = csrf_token(&req)?;
    let page = compose_page_for(&hub, &caller, csrf, ComposeForm::default(), None).await?;
    html(StatusCode::OK, &page, cookie)
}

/// The form as posted (multipart, for its files): text fields read, each file stored as an
/// attachment as it arrives. A file is only stored once the form's token has been checked and
/// its sender is known, so a page on another site cannot upload through a staff browser.
pub(super) async fn compose(req: HttpRequest, parts: Multipart) -> Page {
    let hub = hub(&req)?;
    let posted = match read_compose_form(&req, &hub, parts).await? {
        Posted::Form(posted) => *posted,
        Posted::Elsewhere(answer) => return Ok(answer),
    };
    let PostedForm {
        caller,
        form,
        problem,
    } = posted;
    if let Some(problem) = problem {
        return refused_form(&req, &hub, &caller, form, problem).await;
    }
    let created = match item_input(&form) {
        Ok(input) => workflow::create_item(&hub, &caller, input).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(item) => Ok(see_other(&format!("/console/items/{}?done=created", item.id))),
        Err(e) => {
            let refused = refusal(e)?;
            refused_form(&req, &hub, &caller, form, refused).await
        }
    }
}

/// The compose form shown again with what was typed and what was refused.
async fn refused_form(
    req: &HttpRequest,
    hub: &Hub,
    caller: &Caller,
    form: ComposeForm,
    (status, problem, field): (StatusCode, String, String),
) -> Page {
    let (csrf, cookie) = csrf_token(req)?;
    let page = compose_page_for(hub, caller, csrf, form, Some((problem, field))).await?;
    html(status, &page, cookie)
}

struct PostedForm {
    caller: Caller,
    form: ComposeForm,
    /// Why a file could not be stored, if one could not.
    problem: Option<(StatusCode, String, String)>,
}

enum Posted {
    Form(Box<PostedForm>),
    /// Not a form this browser may post (no token, not signed in): where it goes instead.
    Elsewhere(HttpResponse),
}

async fn read_compose_form(req: &HttpRequest, hub: &Hub, mut parts: Multipart) -> Result<Posted, ApiError> {
    let mut form = ComposeForm::default();
    let mut caller = None;
    let mut problem = None;
    let mut files = 0;
    let text_limit = hub.settings.content.max_json_bytes();
    let mut text_read = 0;
    while let Some(part) = parts.next().await {
        let Ok(mut part) = part else {
            return broken_upload(hub).map(Posted::Elsewhere);
        };
        let name = part.name().unwrap_or_default().to_owned();
        let filename = part
            .content_disposition()
            .and_then(|disposition| disposition.get_filename())
            .map(str::to_owned);
        let Some(filename) = filename else {
            let Some(text) = read_part(&mut part, text_limit - text_read).await else {
                return broken_upload(hub).map(Posted::Elsewhere);
            };
            text_read += text.len();
            form.set(&name, String::from_utf8_lossy(&text).into_owned());
            continue;
        };
        // A file input left empty is posted as a part without a name or content.
        if filename.is_empty() || name != "files" {
            drain(&mut part).await;
            continue;
        }
        // The token is the form's first field: no file is stored before it is checked.
        let who = match &caller {
            Some(who) => who,
            None => match staff_posting(req, hub, &form.csrf).await? {
                Ok(who) => caller.insert(who),
                Err(elsewhere) => return Ok(Posted::Elsewhere(elsewhere)),
            },
        };
        files += 1;
        if problem.is_some() || files > MAX_FILES {
            drain(&mut part).await;
            problem =
                problem.or_else(|| Some(attachment_problem(format!("一次最多上传 {MAX_FILES} 个附件。"))));
            continue;
        }
        let limit = hub.settings.content.max_attachment_bytes;
        // Browsers name a type they know by the file's extension, and send one they do not
        // (an .ofd) as octet-stream: then the extension says.
        let content_type = match part.content_type().map(|mime| mime.essence_str().to_owned()) {
            Some(declared) if declared != "application/octet-stream" => declared,
            _ => type_by_extension(&filename).to_owned(),
        };
        let Some(data) = read_part(&mut part, limit).await else {
            drain(&mut part).await;
            problem = Some(attachment_problem(format!(
                "附件“{filename}”超过 {} MB，未能上传。",
                limit / (1024 * 1024)
            )));
            continue;
        };
        match attachments::upload(hub, who, &content_type, &data).await {
            Ok(stored) => form.attachment.push(format!("{}/{filename}", stored.sha256)),
            Err(Error::Validation { .. }) => {
                problem = Some(attachment_problem(format!(
                    "附件“{filename}”未能上传：只能上传 PDF、OFD、Word、Excel、JPG、PNG、MP3、WAV、AAC 或 TXT 文件，且内容须与文件类型相符。"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let caller = match caller {
        Some(caller) => caller,
        None => match staff_posting(req, hub, &form.csrf).await? {
            Ok(caller) => caller,
            Err(elsewhere) => return Ok(Posted::Elsewhere(elsewhere)),
        },
    };
    Ok(Posted::Form(Box::new(PostedForm {
        caller,
        form,
        problem,
    })))
}

/// The attachment type a file name's extension stands for; empty: none allowed.
fn type_by_extension(filename: &str) -> &'static str {
    let extension = filename
        .rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase())
        .unwrap_or_default();
    match extension.as_str() {
        "pdf" => "application/pdf",
        "ofd" => "application/ofd",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "aac" => "audio/aac",
        "txt" => "text/plain",
        _ => "",
    }
}

fn attachment_problem(text: String) -> (StatusCode, String, String) {
    (StatusCode::UNPROCESSABLE_ENTITY, text, "attachments".to_owned())
}

/// A part's bytes, or `None` past `limit` bytes or when the upload broke off.
async fn read_part(part: &mut Field, limit: usize) -> Option<Vec<u8>> {
    let mut data = Vec::new();
    while let Some(chunk) = part.next().await {
        let chunk = chunk.ok()?;
        if data.len() + chunk.len() > limit {
            return None;
        }
        data.extend_from_slice(&chunk);
    }
    Some(data)
}

/// Reads a part to its end unkept, so the parts after it can be read.
async fn drain(part: &mut Field) {
    while let Some(Ok(_)) = part.next().await {}
}

fn broken_upload(hub: &Hub) -> Page {
    message(
        hub,
        StatusCode::BAD_REQUEST,
        "提交未完成",
        "表单未能完整提交（可能是网络中断）。请返回重新选择附件后再提交。",
    )
}
