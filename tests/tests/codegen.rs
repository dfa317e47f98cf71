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
