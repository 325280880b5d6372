use serde_json::json;

use crate::helpers::{Backend, TEST_MAX_BODY_BYTES, TestApp, item_body, spawn_app};
use crate::on_both_databases;

on_both_databases! {
    async fn a_doc_no_twice_for_one_organ_needs_confirming_and_a_written_date_must_be_real(app: TestApp) {
        let with = |doc_no: &str, issuer: &str| {
            let mut body = item_body("530426");
            body["doc_no"] = json!(doc_no);
            body["issuers"] = json!([issuer]);
            body
        };
        let office = "峨山彝族自治县人民政府办公室";
        app.create_item("publisher", &with("峨政办发[2026]88号", office)).await;
        // The same number, its brackets typed otherwise: refused, naming the field.
        let again = app.post("publisher", "/api/v1/items", &with("峨政办发〔2026〕88号", office)).await;
        assert_eq!((again.status, again.field(), again.json["error"]["code"].clone()), (422, Some("doc_no"), json!("duplicate_doc_no")), "{}", again.json);
        let mut intended = with("峨政办发〔2026〕88号", office);
        intended["confirm_duplicate_doc_no"] = json!(true);
        assert_eq!(app.post("publisher", "/api/v1/items", &intended).await.status, 201);
        // Another organ may use the same number.
        assert_eq!(app.post("publisher", "/api/v1/items", &with("峨政办发〔2026〕88号", "峨山彝族自治县水务局")).await.status, 201);

        let today = herald::clock::china_date(app.hub.clock.now());
        for date in ["1949-09-30".to_owned(), (today + chrono::Duration::days(1)).to_string()] {
            let mut body = item_body("530426");
            body["written_date"] = json!(date);
            let refused = app.post("publisher", "/api/v1/items", &body).await;
            assert_eq!((refused.status, refused.field()), (422, Some("written_date")), "{date}: {}", refused.json);
        }
        let mut founding = item_body("530426");
        founding["written_date"] = json!("1949-10-01");
        assert_eq!(app.post("publisher", "/api/v1/items", &founding).await.status, 201);
    }

    async fn errors_speak_chinese_name_the_field_as_the_form_does_and_hide_parser_internals(app: TestApp) {
        let mut body = item_body("530426");
        body["written_date"] = json!("1949-09-30");
        let refused = app.post("publisher", "/api/v1/items", &body).await;
        assert_eq!(refused.status, 422);
        let error = &refused.json["error"];
        assert_eq!((error["field"].clone(), error["field_label"].clone()), (json!("written_date"), json!("成文日期")), "{error}");
        let said = error["message_zh"].as_str().expect("message_zh");
        assert!(said.starts_with("成文日期：") && said.contains("2026-09-28"), "{said}");
        // A body that is not JSON: said so, without the parser's line and column.
        let request = app
            .client
            .post(format!("{}/api/v1/items", app.address))
            .header("content-type", "application/json")
            .body("{\"title\": \"一\",\n \"body\": }");
        let garbled = app.send(app.auth("publisher", request)).await;
        assert_eq!(garbled.status, 400);
        let message = garbled.json["error"]["message"].as_str().expect("message");
        assert!(!message.contains("line") && !message.contains("column"), "{message}");
        assert!(garbled.json["error"]["message_zh"].as_str().is_some_and(|m| m.contains("请求格式有误")), "{}", garbled.json);
        let forbidden = app.post("reviewer", "/api/v1/items", &item_body("530426")).await;
        assert_eq!(forbidden.json["error"]["message_zh"], "您没有执行此操作的权限。", "{}", forbidden.json);
    }

    async fn bad_input_names_the_field_and_writes_nothing(app: TestApp) {
        let mut missing_title = item_body("530426");
        missing_title.as_object_mut().expect("object").remove("title");
        let long_body = format!("<p>{}</p>", "字".repeat(TEST_MAX_BODY_BYTES));
        let cases = [
            ("title", missing_title),
            ("index_no", { let mut b = item_body("530426"); b["index_no"] = json!("2026-001"); b }),
            ("doc_no", { let mut b = item_body("530426"); b["doc_no"] = json!("峨政办发2026年12号"); b }),
            ("disclosure", { let mut b = item_body("530426"); b["disclosure"] = json!("secret"); b }),
            ("body", { let mut b = item_body("530426"); b["body"] = json!(long_body); b }),
            ("area_code", { let mut b = item_body("530426"); b["area_code"] = json!("530426999"); b }),
            ("area_code", { let mut b = item_body("530426"); b["area_code"] = json!("53x"); b }),
            ("catalog", { let mut b = item_body("530426"); b["catalog"] = json!("no-such-entry"); b }),
            ("written_date", { let mut b = item_body("530426"); b["written_date"] = json!("2026-13-01"); b }),
            ("legal_reason", { let mut b = item_body("530426"); b["disclosure"] = json!("not_public"); b }),
            ("attachments[0].sha256", { let mut b = item_body("530426"); b["attachments"] = json!([{"sha256": "00".repeat(32), "filename": "a.pdf"}]); b }),
            ("colour", { let mut b = item_body("530426"); b["colour"] = json!("red"); b }),
        ];
        for (field, body) in cases {
            let reply = app.post("publisher", "/api/v1/items", &body).await;
            assert!((400..500).contains(&reply.status), "{field}: {} {}", reply.status, reply.json);
            assert_eq!(reply.field(), Some(field), "{}", reply.json);
            assert!(reply.json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
        let listed = app.get("admin", "/api/v1/items").await;
        assert_eq!(listed.json["total"], 0, "no refused item was stored");
        let audit = app.get("admin", "/api/v1/audit?limit=1000").await;
        assert!(audit.json.as_array().expect("array").iter().all(|e| e["target_type"] != "item"));
    }

    async fn attachments_are_type_checked_and_content_addressed(app: TestApp) {
        let refused = app.upload("publisher", "application/x-msdownload", b"MZ\x90\x00".to_vec()).await;
        assert_eq!(refused.status, 422, "{}", refused.json);
        assert_eq!(refused.field(), Some("content_type"));
        let disguised = app.upload("publisher", "application/pdf", b"MZ\x90\x00 not a pdf".to_vec()).await;
        assert_eq!(disguised.status, 422);
        assert_eq!(disguised.field(), Some("content_type"));
        // Audio is decoded whole at upload: a file that only starts like MP3, or a WAV header
        // with no samples, would be silence or noise on a village loudspeaker.
        let mut fake_mp3 = b"ID3\x04\x00\x00\x00\x00\x00\x00".to_vec();
        fake_mp3.extend([0x55; 2048]);
        let header_only = herald::domain::audio::tone_wav(1000, 8000)[..44].to_vec();
        for (content_type, bytes) in [("audio/mpeg", &fake_mp3), ("audio/wav", &header_only)] {
            let unplayable = app.upload("publisher", content_type, bytes.clone()).await;
            assert_eq!((unplayable.status, unplayable.field()), (422, Some("body")), "{}", unplayable.json);
            assert!(unplayable.json["error"]["message"].as_str().is_some_and(|m| m.contains("audio")), "{}", unplayable.json);
        }
        for refused_bytes in [&b"MZ\x90\x00"[..], &b"MZ\x90\x00 not a pdf"[..], &fake_mp3[..], &header_only[..]] {
            let sha = herald::domain::item::sha256_hex(refused_bytes);
            let missing = app.get("publisher", &format!("/api/v1/attachments/{sha}")).await;
            assert_eq!(missing.status, 404, "a refused upload is not stored");
        }

        let pdf = b"%PDF-1.7\n%test attachment\n".to_vec();
        let stored = app.upload("publisher", "application/pdf", pdf.clone()).await;
        assert_eq!(stored.status, 201, "{}", stored.json);
        let sha = stored.json["sha256"].as_str().expect("sha").to_owned();
        assert_eq!(sha, herald::domain::item::sha256_hex(&pdf));
        let mut body = item_body("530426");
        body["attachments"] = json!([{"sha256": sha, "filename": "附件1.pdf"}]);
        app.create_item("publisher", &body).await;
        let downloaded = app.client.get(format!("{}/api/v1/attachments/{sha}", app.address))
            .bearer_auth(&app.tokens["reviewer"]).send().await.expect("download");
        assert_eq!(downloaded.headers()["content-type"], "application/pdf");
        assert_eq!(downloaded.bytes().await.expect("bytes").to_vec(), pdf);
    }
}
