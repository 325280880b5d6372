//! WeChat official accounts (微信公众号). So far: the API client and its error remedies
//! (`api`), one access token per account shared across workers and instances (`tokens`), the
//! callback crypto (`crypto`) and the publish events (`events`). The publishing adapter
//! (drafts, `freepublish`, the callback) builds on these.

pub mod api;
pub mod crypto;
pub mod events;
pub mod tokens;
