//! Calls to the official-account API (wechat-api.md §A.1–A.2, §A.9): JSON over HTTPS, errors
//! as `errcode` in a 200 answer, and what each error asks of the caller.

use std::time::Duration;

use serde_json::{Value, json};

/// An official account as the hub reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub app_id: String,
    /// `https://api.weixin.qq.com` unless a county must go through a proxy (or a test fake).
    pub api_base: String,
}

/// WeChat's default API address.
pub const API_BASE: &str = "https://api.weixin.qq.com";

/// Why a call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// No connection was made: nothing reached WeChat.
    #[error("WeChat could not be reached: {0}")]
    NotSent(String),
    /// Sent, with no (readable) answer: it may have taken effect.
    #[error("no answer from WeChat: {0}")]
    NoAnswer(String),
    /// WeChat answered with an error code.
    #[error("WeChat error {code}: {message}")]
    WeChat { code: i64, message: String },
}

/// What an error asks of the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remedy {
    /// The access token is invalid or expired: renew it once and try once more.
    RenewToken,
    /// The daily quota is used up: try again after it resets.
    WaitForQuota,
    /// A passing fault (WeChat's -1, a lost connection): try again with a backoff.
    Retry,
    /// Trying again cannot help; the message says, in Chinese, what an administrator can do.
    GiveUp(String),
}

impl ApiError {
    pub fn remedy(&self) -> Remedy {
        match self {
            // A call that may have taken effect (a submit, a delete) is caught by its caller
            // before this; any other is safe to make again.
            ApiError::NotSent(_) | ApiError::NoAnswer(_) => Remedy::Retry,
            ApiError::WeChat { code, message } => match code {
                40001 | 42001 | 40014 => Remedy::RenewToken,
                45009 | 45011 => Remedy::WaitForQuota,
                -1 => Remedy::Retry,
                40164 => Remedy::GiveUp(
                    "本服务器的出口IP不在公众号的IP白名单中：请在微信公众平台“设置与开发—基本配置”中加入后重试".into(),
                ),
                48001 => Remedy::GiveUp("公众号没有该接口的权限（发布接口需微信认证），请确认账号认证状态".into()),
                40013 | 40125 => Remedy::GiveUp("公众号的AppID或AppSecret不正确，请核对目标设置".into()),
                _ => Remedy::GiveUp(format!("微信返回错误 {code}：{message}")),
            },
        }
    }
}

/// How long one call may take before it counts as unanswered. An attempt makes at most seven
/// (token, draft, renewal, draft again, submit, renewal, submit again): 35 s, within WeChat's
/// default attempt deadline (55 s), so the hub never cuts an attempt off mid-submit.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What a call sends.
#[derive(Clone, Copy)]
pub enum Payload<'a> {
    Json(&'a Value),
    /// `media/uploadimg`'s multipart form: the image as the `media` part.
    Image {
        filename: &'a str,
        content_type: &'a str,
        bytes: &'a [u8],
    },
}

/// POSTs `body` to `path` (with the access token, when given) and returns the answer, or the
/// error code WeChat answered with.
pub async fn call(
    client: &reqwest::Client,
    account: &Account,
    access_token: Option<&str>,
    path: &str,
    body: &Value,
) -> Result<Value, ApiError> {
    send(client, account, access_token, path, Payload::Json(body)).await
}

/// As [`call`], with any payload.
pub async fn send(
    client: &reqwest::Client,
    account: &Account,
    access_token: Option<&str>,
    path: &str,
    payload: Payload<'_>,
) -> Result<Value, ApiError> {
    let request = client
        .post(format!("{}{path}", account.api_base.trim_end_matches('/')))
        .timeout(CALL_TIMEOUT);
    let mut request = match payload {
        Payload::Json(body) => request.json(body),
        Payload::Image {
            filename,
            content_type,
            bytes,
        } => {
            let part = reqwest::multipart::Part::bytes(bytes.to_vec())
                .file_name(filename.to_owned())
                .mime_str(content_type)
                .map_err(|e| ApiError::NotSent(format!("unusable media type {content_type}: {e}")))?;
            request.multipart(reqwest::multipart::Form::new().part("media", part))
        }
    };
    if let Some(token) = access_token {
        request = request.query(&[("access_token", token)]);
    }
    let response = match request.send().await {
        Ok(response) => response,
        // Without the URL: it carries the access token.
        Err(e) if e.is_connect() => return Err(ApiError::NotSent(e.without_url().to_string())),
        Err(e) => return Err(ApiError::NoAnswer(e.without_url().to_string())),
    };
    let status = response.status();
    let answer: Value = response
        .json()
        .await
        .map_err(|e| ApiError::NoAnswer(format!("HTTP {status}, unreadable answer: {}", e.without_url())))?;
    match answer["errcode"].as_i64() {
        None | Some(0) => Ok(answer),
        // A mass send already made under this clientmsgid: the answer names its msg_id, and
        // the send is as good as this one (§A.6), so a retry is idempotent.
        Some(45065) if !answer["msg_id"].is_null() => Ok(answer),
        Some(code) => Err(ApiError::WeChat {
            code,
            message: answer["errmsg"].as_str().unwrap_or_default().to_owned(),
        }),
    }
}

/// A token fresh from WeChat.
#[derive(Clone, PartialEq, Eq)]
pub struct FreshToken {
    pub token: String,
    pub expires_in: Duration,
}

impl std::fmt::Debug for FreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreshToken")
            .field("token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// `POST /cgi-bin/stable_token`: the account's stable access token (§A.2.2); `force` asks for
/// a new one even if the current one is still valid (after WeChat refused it).
pub async fn stable_token(
    client: &reqwest::Client,
    account: &Account,
    app_secret: &str,
    force: bool,
) -> Result<FreshToken, ApiError> {
    let body = json!({
        "grant_type": "client_credential",
        "appid": account.app_id,
        "secret": app_secret,
        "force_refresh": force,
    });
    let answer = call(client, account, None, "/cgi-bin/stable_token", &body).await?;
    let token = answer["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::NoAnswer("stable_token answered without access_token".into()))?;
    let expires_in = answer["expires_in"]
        .as_u64()
        .ok_or_else(|| ApiError::NoAnswer("stable_token answered without expires_in".into()))?;
    Ok(FreshToken {
        token: token.to_owned(),
        expires_in: Duration::from_secs(expires_in),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_of_the_issue_has_its_remedy() {
        let wechat = |code| ApiError::WeChat {
            code,
            message: "errmsg".into(),
        };
        for code in [40001, 42001, 40014] {
            assert_eq!(wechat(code).remedy(), Remedy::RenewToken, "{code}");
        }
        for code in [45009, 45011] {
            assert_eq!(wechat(code).remedy(), Remedy::WaitForQuota, "{code}");
        }
        assert_eq!(wechat(-1).remedy(), Remedy::Retry);
        assert_eq!(ApiError::NotSent("refused".into()).remedy(), Remedy::Retry);
        assert_eq!(ApiError::NoAnswer("timed out".into()).remedy(), Remedy::Retry);
        for (code, says) in [
            (40164, "白名单"),
            (48001, "认证"),
            (40125, "AppSecret"),
            (53503, "53503"),
        ] {
            match wechat(code).remedy() {
                Remedy::GiveUp(message) => assert!(message.contains(says), "{code}: {message}"),
                other => panic!("{code}: {other:?}"),
            }
        }
    }
}
