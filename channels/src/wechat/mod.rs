//! WeChat official accounts (微信公众号), sans-IO parts first: the callback crypto and the
//! publish events. The adapter that publishes (access tokens, drafts, `freepublish`) builds on
//! these.

pub mod crypto;
pub mod events;
