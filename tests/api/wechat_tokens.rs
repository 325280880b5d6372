//! One WeChat access token per account, whatever the number of workers and hub instances
//! asking for it at once: fetched once, renewed once when WeChat refuses it, stored sealed.

use std::sync::Arc;

use herald::delivery::wechat_tokens::StoredTokens;
use herald::hub::Hub;
use herald_channels::wechat::{
    api::Account,
    tokens::{AccessTokens, TokenStore},
};
use sea_orm::EntityTrait;

use crate::fake_wechat::FakeWechat;
use crate::helpers::{Backend, spawn_app};
use crate::on_both_backends;

const APP_ID: &str = "wx49f0ab532d5d035a";
const APP_SECRET: &str = "app-secret-峨山";

fn store_of(hub: &Hub) -> Arc<dyn TokenStore> {
    Arc::new(StoredTokens::new(
        hub.db.clone(),
        hub.secrets_key.clone(),
        hub.clock.clone(),
    ))
}

fn tokens(hub: &Hub, store: Arc<dyn TokenStore>) -> AccessTokens {
    let clock = hub.clock.clone();
    AccessTokens::new(reqwest::Client::new(), store, Arc::new(move || clock.now()))
}

on_both_backends! {
    workers_and_hub_instances_asking_at_once_fetch_and_renew_a_token_once => |backend| async move {
        let fake = FakeWechat::start(APP_ID, APP_SECRET).await;
        // A slow WeChat: callers renewing at once surely overlap.
        fake.set_token_delay(std::time::Duration::from_millis(200));
        let app = spawn_app(backend).await;
        let account = Account { app_id: APP_ID.into(), api_base: fake.base_url.clone() };
        // Two workers of this instance share its store; on PostgreSQL a second instance has
        // its own (SQLite serves one instance).
        let here = store_of(&app.hub);
        let second_hub = if matches!(backend, Backend::Postgres) {
            Some(herald::startup::open_hub(app.hub.settings.clone(), app.hub.clock.clone()).await.expect("a second instance"))
        } else {
            None
        };
        let there = second_hub.as_ref().map_or_else(|| here.clone(), store_of);
        let callers = [
            tokens(&app.hub, here.clone()),
            tokens(&app.hub, here.clone()),
            tokens(&app.hub, there.clone()),
            tokens(&app.hub, there.clone()),
        ];
        let got = futures::future::join_all(callers.iter().map(|c| c.token(&account, APP_SECRET))).await;
        let first = got[0].clone().expect("a token");
        assert!(got.iter().all(|t| t.as_ref() == Ok(&first)), "{got:?}");
        // One caller asked WeChat; the others found its token in the store.
        assert_eq!((fake.tokens_issued(), fake.token_requests()), (1, 1));

        // WeChat refuses it (revoked on its side): every caller it refused asks to renew it,
        // and one new token comes of it.
        fake.expire_tokens();
        let renewed = futures::future::join_all(callers.iter().map(|c| c.renew_refused(&account, APP_SECRET, &first))).await;
        let second = renewed[0].clone().expect("a new token");
        assert_ne!(second, first);
        assert!(renewed.iter().all(|t| t.as_ref() == Ok(&second)), "{renewed:?}");
        assert_eq!((fake.tokens_issued(), fake.token_requests()), (2, 2));
        // Asked again later, the stored one serves.
        assert_eq!(callers[3].token(&account, APP_SECRET).await.as_ref(), Ok(&second));
        assert_eq!(fake.token_requests(), 2);

        // The database alone does not give it away.
        let row = herald::store::entities::wechat_token::Entity::find_by_id(APP_ID).one(&app.hub.db).await.expect("read").expect("stored");
        assert!(!row.ciphertext.windows(second.len()).any(|w| w == second.as_bytes()));
    };
}

#[tokio::test]
async fn a_wrong_secret_is_an_error_an_administrator_can_act_on() {
    let fake = FakeWechat::start(APP_ID, APP_SECRET).await;
    let app = spawn_app(Backend::Sqlite).await;
    let account = Account {
        app_id: APP_ID.into(),
        api_base: fake.base_url.clone(),
    };
    let refused = tokens(&app.hub, store_of(&app.hub))
        .token(&account, "not-the-secret")
        .await
        .expect_err("refused");
    match refused {
        herald_channels::wechat::tokens::TokenError::Api(e) => match e.remedy() {
            herald_channels::wechat::api::Remedy::GiveUp(message) => {
                assert!(message.contains("AppSecret"), "{message}")
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.tokens_issued(), 0);
}

on_both_backends! {
    the_upkeep_renews_each_accounts_token_before_it_ends_once_across_instances => |backend| async move {
        let wx = crate::wechat::account(backend).await;
        let second_hub = if matches!(backend, Backend::Postgres) {
            Some(herald::startup::open_hub(wx.app.hub.settings.clone(), wx.app.hub.clock.clone()).await.expect("a second instance"))
        } else {
            None
        };
        let hubs = [wx.app.hub.clone(), second_hub.map_or_else(|| wx.app.hub.clone(), Arc::new)];
        let upkeep = || futures::future::join_all(hubs.iter().map(|hub| async move {
            herald::workers::try_channel_upkeep(hub).await.expect("upkeep")
        }));
        // The first round fetches the account's token: one request, whichever instance won.
        assert_eq!(upkeep().await, [1, 1], "the one WeChat target kept on each instance");
        assert_eq!(wx.fake.token_requests(), 1);
        let two_hours = chrono::Duration::seconds(crate::fake_wechat::DEFAULT_TOKEN_TTL_SECONDS);
        // Until its last five minutes, the stored token serves.
        wx.advance(two_hours - chrono::Duration::minutes(6));
        upkeep().await;
        assert_eq!(wx.fake.token_requests(), 1);
        // In them, WeChat hands out the next one: renewed once, by the upkeep.
        wx.advance(chrono::Duration::minutes(2));
        upkeep().await;
        assert_eq!((wx.fake.token_requests(), wx.fake.tokens_issued()), (2, 2));
        // The workers find it fresh and ask for none.
        wx.app.publish_new(&crate::helpers::item_body("530426"), &serde_json::json!({"channels": ["wechat"]})).await;
        wx.app.deliver_due().await;
        assert_eq!(wx.fake.token_requests(), 2);
        assert_eq!(wx.fake.drafts(), 1);
    };
}
