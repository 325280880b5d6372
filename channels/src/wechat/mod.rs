//! WeChat official accounts (微信公众号): the publishing adapter (`adapter`), the API client and
//! its error remedies (`api`), one access token per account shared across workers and
//! instances (`tokens`), the callback crypto (`crypto`) and the publish events (`events`).

pub mod adapter;
pub mod api;
pub mod crypto;
pub mod events;
pub mod html;
pub mod tokens;
