//! The organ list (发文机关名录) over HTTP: everyone signed in reads it (the console offers it
//! for an item's 发文机关); administrators add organs and change their aliases, area or
//! retirement.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{
    error::{ApiError, ErrorBody},
    extract::{ApiJson, hub},
};
use crate::{
    accounts::Caller,
    organs::{self, NewOrgan, OrganChange, OrganView},
};

type Reply = Result<HttpResponse, ApiError>;

/// A new organ.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewOrgan)]
pub struct NewOrganInput {
    /// The full name, as the organ signs its documents (峨山彝族自治县水务局).
    pub name: String,
    /// Other spellings items may use (峨山县水务局, 县水务局); none may be another organ's name
    /// or alias.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// 6 or 9 digits within your area; omitted, your own area.
    #[serde(default)]
    pub area_code: Option<String>,
}

/// What to change of an organ; what is omitted stays. Its name stays: a renamed organ is a new
/// organ, and the old one is retired.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = OrganChange)]
pub struct OrganChangeInput {
    /// The aliases it has from now on (replacing the ones it had).
    #[serde(default)]
    pub aliases: Option<Vec<String>>,
    /// Its area, within yours.
    #[serde(default)]
    pub area_code: Option<String>,
    /// `true` retires it (机构改革: its published items stay, new items cannot name it);
    /// `false` reinstates it.
    #[serde(default)]
    pub retired: Option<bool>,
}

/// The organ list: every organ an item's 发文机关 may name, with its aliases (retired ones
/// marked)
#[utoipa::path(
    get, path = "/api/v1/organs", tag = "system",
    responses((status = 200, description = "Organs, by area", body = Vec<OrganView>)),
)]
pub async fn list_organs(req: HttpRequest, _caller: Caller) -> Reply {
    Ok(HttpResponse::Ok().json(organs::list(&*hub(&req)?).await?))
}

/// Add an organ to the list (administrators, within their area)
#[utoipa::path(
    post, path = "/api/v1/organs", tag = "system",
    request_body = NewOrganInput,
    responses(
        (status = 201, description = "Added", body = OrganView),
        (status = 403, description = "Not an administrator, or an area outside yours", body = ErrorBody),
        (status = 422, description = "Invalid input, or a name or alias another organ already has (`organ_name_taken`); `field` names it", body = ErrorBody),
    )
)]
pub async fn create_organ(req: HttpRequest, caller: Caller, input: ApiJson<NewOrganInput>) -> Reply {
    let input = input.0;
    let new = NewOrgan {
        name: input.name,
        aliases: input.aliases,
        area_code: input.area_code,
    };
    let organ = organs::create(&*hub(&req)?, &caller, new).await?;
    Ok(HttpResponse::Created().json(organ))
}

/// Change an organ's aliases, area or retirement (administrators, for organs of their area)
#[utoipa::path(
    patch, path = "/api/v1/organs/{id}", tag = "system",
    params(("id" = String, Path, description = "The organ's id")),
    request_body = OrganChangeInput,
    responses(
        (status = 200, description = "The organ as it now stands", body = OrganView),
        (status = 403, description = "Not an administrator, or the organ or the new area is outside your area", body = ErrorBody),
        (status = 404, description = "No such organ", body = ErrorBody),
        (status = 422, description = "Invalid input, or an alias another organ already has (`organ_name_taken`); `field` names it", body = ErrorBody),
    )
)]
pub async fn update_organ(
    req: HttpRequest,
    caller: Caller,
    id: web::Path<String>,
    input: ApiJson<OrganChangeInput>,
) -> Reply {
    let input = input.0;
    let change = OrganChange {
        aliases: input.aliases,
        area_code: input.area_code,
        retired: input.retired,
    };
    let organ = organs::update(&*hub(&req)?, &caller, &id, change).await?;
    Ok(HttpResponse::Ok().json(organ))
}
