//! The device registry over HTTP: list, register one device (its credential in the answer, the
//! only time it is shown), revoke. Bulk import is `herald device import`.

use actix_web::{HttpRequest, HttpResponse, web};

use super::{
    error::{ApiError, ErrorBody},
    extract::{ApiJson, hub},
};
use crate::{
    accounts::Caller,
    delivery::devices::{self, DeviceView, Issued, NewDevice},
    domain::user::Role,
    error::Error,
};

type Reply = Result<HttpResponse, ApiError>;

/// The area an administrator registers and revokes devices in; other roles may not.
fn admin_scope(caller: &Caller) -> Result<&crate::domain::area::AreaCode, Error> {
    if caller.role != Role::Admin {
        return Err(Error::forbidden(
            "only administrators register and revoke devices",
        ));
    }
    Ok(&caller.area)
}

/// Devices of your area, with when each was last seen
#[utoipa::path(
    get, path = "/api/v1/devices", tag = "devices",
    responses((status = 200, description = "Devices", body = Vec<DeviceView>)),
)]
pub async fn list_devices(req: HttpRequest, caller: Caller) -> Reply {
    Ok(HttpResponse::Ok().json(devices::list_devices(&*hub(&req)?, Some(&caller.area)).await?))
}

/// Register a device (administrators); its credential is in this answer only
#[utoipa::path(
    post, path = "/api/v1/devices", tag = "devices",
    request_body = NewDevice,
    responses(
        (status = 201, description = "Registered; keep `credential`, it is never shown again", body = Issued),
        (status = 403, description = "Not an administrator, or an area outside yours", body = ErrorBody),
        (status = 422, description = "Invalid input, or a device id already taken; `field` names it", body = ErrorBody),
    )
)]
pub async fn add_device(req: HttpRequest, caller: Caller, input: ApiJson<NewDevice>) -> Reply {
    let scope = admin_scope(&caller)?;
    // Outside the administrator's area is a refusal, as for any target; what does not parse
    // is reported by the registry with the rest.
    if let Ok(area) = crate::domain::area::AreaCode::parse(input.0.area_code.trim())
        && !caller.sees(&area)
    {
        return Err(Error::forbidden(format!("area {area} is outside your area {}", caller.area)).into());
    }
    let added =
        devices::add_devices(&*hub(&req)?, &caller.id, Some(scope), vec![(1, input.0)], &|_| {}).await?;
    match added {
        Ok(mut issued) => {
            let issued = issued
                .pop()
                .ok_or_else(|| Error::from(anyhow::anyhow!("nothing registered")))?;
            Ok(HttpResponse::Created().json(issued))
        }
        Err(mut errors) => {
            let first = errors.swap_remove(0);
            Err(Error::validation(first.field, first.message).into())
        }
    }
}

/// Revoke a device (administrators): its credential stops working and nothing more reaches it
#[utoipa::path(
    post, path = "/api/v1/devices/{id}/revoke", tag = "devices",
    params(("id" = String, Path, description = "The device id")),
    responses(
        (status = 200, description = "Revoked", body = DeviceView),
        (status = 403, description = "Not an administrator, or the device is outside your area", body = ErrorBody),
        (status = 404, description = "No such device", body = ErrorBody),
        (status = 409, description = "Already revoked", body = ErrorBody),
    )
)]
pub async fn revoke_device(req: HttpRequest, caller: Caller, id: web::Path<String>) -> Reply {
    let scope = admin_scope(&caller)?;
    let revoked = devices::revoke_device(&*hub(&req)?, &caller.id, Some(scope), &id).await?;
    Ok(HttpResponse::Ok().json(revoked))
}
