//! The generated code of the codegen corpus compiles and answers calls: every rpc kind, a method
//! with odd casing, a package-less service, well-known types and keyword-named fields in JSON.

use micro::{CallOptions, Error, Request, ServerStream, Streaming};
use micro_tests::corpus::corpus::shop::v1::*;
use micro_tests::corpus::corpus::types::{Everything, Nothing};
use micro_tests::corpus::{BareClient, BareHandler, PingReply, PingRequest};
use micro_tests::{client, memory_registry};

struct Shop;

impl ShopHandler for Shop {
    async fn get_item(&self, request: Request<GetItemRequest>) -> Result<Item, Error> {
        Ok(Item {
            id: request.id.clone(),
            title: "a hat".into(),
            details: Some(Everything { r#type: "hat".into(), ..Default::default() }),
        })
    }
    async fn create_item(&self, request: Request<Item>) -> Result<Item, Error> {
        Ok(request.into_inner())
    }
    async fn list_items(&self, request: Request<ListItemsRequest>, stream: ServerStream<Item>) -> Result<(), Error> {
        for i in 0..request.page_size {
            stream.send(Item { id: i.to_string(), ..Default::default() }).await?;
        }
        Ok(())
    }
    async fn upload(&self, request: Request<Streaming<Item>>) -> Result<UploadSummary, Error> {
        let mut items = request.into_inner();
        let mut count = 0;
        while items.message().await?.is_some() {
            count += 1;
        }
        Ok(UploadSummary { count })
    }
    async fn haggle(&self, request: Request<Streaming<Offer>>, stream: ServerStream<Offer>) -> Result<(), Error> {
        let mut offers = request.into_inner();
        while let Some(o) = offers.message().await? {
            stream.send(Offer { cents: o.cents * 2 }).await?;
        }
        Ok(())
    }
    async fn get_http_status(&self, _: Request<GetItemRequest>) -> Result<Nothing, Error> {
        Ok(Nothing { empty: Some(Default::default()) })
    }
    async fn old_get(&self, request: Request<GetItemRequest>) -> Result<Item, Error> {
        self.get_item(request).await
    }
}

struct Bare;

impl BareHandler for Bare {
    async fn ping(&self, request: Request<PingRequest>) -> Result<PingReply, Error> {
        Ok(PingReply { payload: request.payload.clone() })
    }
}

#[tokio::test]
async fn corpus_services_answer_every_kind() {
    let registry = memory_registry();
    let svc = micro::Service::builder().name("shop").registry(registry.clone()).build().unwrap();
    register_shop_handler(svc.server(), Shop);
    micro_tests::corpus::register_bare_handler(svc.server(), Bare);
    svc.start().await.unwrap();
    let c = client(registry, 0);
    let shop = ShopClient::new("shop", c.clone());

    let item = shop.get_item(GetItemRequest { id: "7".into() }).await.unwrap();
    assert_eq!((item.id.as_str(), item.details.unwrap().r#type.as_str()), ("7", "hat"));
    assert!(shop.get_http_status(GetItemRequest::default()).await.unwrap().empty.is_some());
    #[allow(deprecated)]
    let old = shop.old_get(GetItemRequest { id: "8".into() }).await.unwrap();
    assert_eq!(old.id, "8");

    let mut list = shop.list_items(ListItemsRequest { page_size: 3 }).await.unwrap();
    let mut n = 0;
    while list.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);

    let (tx, reply) = shop.upload().await.unwrap();
    tx.send(Item::default()).await.unwrap();
    tx.send(Item::default()).await.unwrap();
    tx.close();
    assert_eq!(reply.reply().await.unwrap().count, 2);

    let (tx, mut rx) = shop.haggle().await.unwrap();
    tx.send(Offer { cents: 21 }).await.unwrap();
    assert_eq!(rx.message().await.unwrap().unwrap().cents, 42);
    drop(tx);

    let bare = BareClient::new("shop", c.clone());
    assert_eq!(bare.ping(PingRequest { payload: "p".into() }).await.unwrap().payload, "p");

    let json = c
        .call_json(
            "shop",
            "Shop.CreateItem",
            br#"{"id":"9","details":{"type":"cap","match":true,"self":"s","fn":3,"loop":"l","at":"2024-01-02T03:04:05Z","extra":{"a":[1,"x"]},"big":"12","color":"COLOR_RED","inners":{"k":{"level":"LEVEL_HIGH"}},"text":"t"}}"#,
            CallOptions::new(),
        )
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let d = &v["details"];
    assert_eq!((d["type"].as_str(), d["match"].as_bool(), d["fn"].as_i64()), (Some("cap"), Some(true), Some(3)));
    assert_eq!(d["at"], "2024-01-02T03:04:05Z", "proto3 JSON: UTC with Z");
    assert_eq!(d["extra"], serde_json::json!({"a": [1.0, "x"]}));
    assert_eq!(
        (d["big"].as_str(), d["color"].as_str(), d["text"].as_str()),
        (Some("12"), Some("COLOR_RED"), Some("t"))
    );
    assert_eq!(d["inners"]["k"]["level"], "LEVEL_HIGH");
    svc.stop().await;
}

mod plain {
    //! The corpus compiled without an include file: names that collide with generated ones,
    //! well-known types as rpc types, proto2, and a service of one package on another's messages.

    use micro::wkt::{Empty, Timestamp};
    use micro::{CallOptions, Error, Request, ServerStream};
    use micro_tests::plain::corpus::collide::{
        register_clash_handler, ClashClient, ClashHandler, ClashRpcClient, ClashRpcHandler,
    };
    use micro_tests::plain::corpus::legacy::{register_legacy_handler, Kind, LegacyClient, LegacyHandler, Old};
    use micro_tests::plain::corpus::uses::{register_uses_handler, UsesClient, UsesHandler};
    use micro_tests::{client, memory_registry};

    struct Clash;

    fn note(r: &Request<ClashClient>, by: &str) -> ClashClient {
        ClashClient { note: format!("{by}:{}", r.note) }
    }

    impl ClashRpcHandler for Clash {
        async fn new_(&self, request: Request<ClashClient>) -> Result<ClashHandler, Error> {
            Ok(ClashHandler { note: format!("new:{}", request.note) })
        }
        async fn get(&self, request: Request<ClashClient>) -> Result<ClashClient, Error> {
            Ok(note(&request, "Get"))
        }
        async fn get_with(&self, request: Request<ClashClient>) -> Result<ClashClient, Error> {
            Ok(note(&request, "GetWith"))
        }
        async fn get_(&self, request: Request<ClashClient>) -> Result<ClashClient, Error> {
            Ok(note(&request, "get"))
        }
        async fn ping(&self, _: Request<Empty>) -> Result<Empty, Error> {
            Ok(Empty {})
        }
        async fn now(&self, _: Request<Empty>) -> Result<Timestamp, Error> {
            Ok(Timestamp { seconds: 63_108_020, nanos: 21_000_000 })
        }
        async fn watch(&self, _: Request<Empty>, stream: ServerStream<Timestamp>) -> Result<(), Error> {
            for seconds in 0..2 {
                stream.send(Timestamp { seconds, nanos: 0 }).await?;
            }
            Ok(())
        }
    }

    struct Legacy;

    impl LegacyHandler for Legacy {
        async fn touch(&self, request: Request<Old>) -> Result<Old, Error> {
            let old = request.into_inner();
            Ok(Old { count: Some(old.count() + 1), ..old })
        }
    }

    impl UsesHandler for Legacy {
        async fn wrap(&self, request: Request<Old>) -> Result<Old, Error> {
            Ok(Old { name: format!("[{}]", request.name), ..request.into_inner() })
        }
    }

    #[tokio::test]
    async fn collisions_well_known_types_proto2_and_imports_compile_and_answer() {
        let registry = memory_registry();
        let svc = micro::Service::builder().name("plain").registry(registry.clone()).build().unwrap();
        register_clash_handler(svc.server(), Clash);
        register_legacy_handler(svc.server(), Legacy);
        register_uses_handler(svc.server(), Legacy);
        svc.start().await.unwrap();
        let c = client(registry, 0);

        let clash = ClashRpcClient::new("plain", c.clone());
        let asked = || ClashClient { note: "n".into() };
        assert_eq!(clash.new_(asked()).await.unwrap().note, "new:n");
        assert_eq!(clash.get(asked()).await.unwrap().note, "Get:n");
        assert_eq!(clash.get_with_options(asked(), CallOptions::new()).await.unwrap().note, "Get:n");
        assert_eq!(clash.get_with(asked()).await.unwrap().note, "GetWith:n");
        assert_eq!(clash.get_(asked()).await.unwrap().note, "get:n");
        assert_eq!(clash.ping(Empty {}).await.unwrap(), Empty {});
        assert_eq!(clash.now(Empty {}).await.unwrap().to_string(), "1972-01-01T10:00:20.021Z");
        let mut ticks = clash.watch(Empty {}).await.unwrap();
        let mut seen = vec![];
        while let Some(t) = ticks.message().await.unwrap() {
            seen.push(t.seconds);
        }
        assert_eq!(seen, [0, 1]);
        let now = c.call_json("plain", "Clash.Now", b"{}", CallOptions::new()).await.unwrap();
        assert_eq!(now.as_ref(), br#""1972-01-01T10:00:20.021Z""#, "a Timestamp reply is its JSON string");

        // proto2: required and optional fields, defaults, in protobuf and JSON.
        let legacy = LegacyClient::new("plain", c.clone());
        let touched = legacy.touch(Old { name: "a".into(), ..Default::default() }).await.unwrap();
        assert_eq!((touched.count(), touched.label(), touched.kind()), (8, "none", Kind::B));
        let json =
            c.call_json("plain", "Legacy.Touch", br#"{"name":"j","count":1,"kind":"KIND_A"}"#, CallOptions::new());
        let v: serde_json::Value = serde_json::from_slice(&json.await.unwrap()).unwrap();
        assert_eq!(v, serde_json::json!({"name": "j", "count": 2, "kind": "KIND_A"}));

        // One package's service on another's messages, without an include file.
        let uses = UsesClient::new("plain", c);
        assert_eq!(uses.wrap(Old { name: "u".into(), ..Default::default() }).await.unwrap().name, "[u]");
        svc.stop().await;
    }
}
