//! A `testing.Tester` node as its own process, for tests that kill, restart and signal nodes.
//! `TESTER_NODE` names the node in replies; everything else comes from `MICRO_*`.
//!
//! For tests of a chain of services: with `TESTER_FORWARD=SERVICE`, `Echo` calls `SERVICE`'s
//! `Echo` with the same request and answers its reply, after publishing the request to
//! `TESTER_PUBLISH` (a topic) if set; with `TESTER_SUBSCRIBE=TOPIC`, the node subscribes to
//! `TOPIC` and logs `heard` with the message's `text` for each message; with `TESTER_QUEUE=Q` too,
//! it joins queue group `Q`, takes `TESTER_HANDLE_MS` over each message and prints
//! `heard <text>` on standard output once it is handled (for tests of durable brokers).
//!
//! For tests of sick and overloaded nodes, `Echo` can misbehave: `TESTER_FAIL_CODE=500` fails
//! every call with that code, `TESTER_DELAY_MS=N` takes N ms over each call, and
//! `TESTER_CAPACITY=N` lets at most N calls do that work at once (the others wait their turn,
//! as on a pool of N connections).

use micro::{Error, Publisher, Request, ServerStream, Streaming};
use micro_tests::testing::{self, CountRequest, EchoReply, EchoRequest, Line, Number, TesterClient, TesterHandler};
use micro_tests::Tester;

/// `Tester` as the `TESTER_*` variables shape its `Echo`: passed on down a chain, or sick, slow
/// or of bounded capacity; the other methods are `Tester`'s.
struct Node {
    tester: Tester,
    forward: Option<(TesterClient, Option<Publisher>)>,
    fail_code: u16,
    delay: std::time::Duration,
    capacity: Option<tokio::sync::Semaphore>,
}

impl TesterHandler for Node {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<EchoReply, Error> {
        if let Some((next, publish)) = &self.forward {
            let message = request.into_inner();
            if let Some(publisher) = publish {
                publisher.publish(&message).await?;
            }
            return next.echo(message).await;
        }
        let _turn = match &self.capacity {
            Some(pool) => Some(pool.acquire().await.map_err(|e| Error::internal_server_error("testing", e))?),
            None => None,
        };
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        if self.fail_code != 0 {
            return Err(Error::new("testing", self.fail_code, "this node fails every call"));
        }
        self.tester.echo(request).await
    }

    async fn peek(&self, request: Request<EchoRequest>) -> Result<EchoReply, Error> {
        self.tester.peek(request).await
    }

    async fn count(&self, request: Request<CountRequest>, stream: ServerStream<Number>) -> Result<(), Error> {
        self.tester.count(request, stream).await
    }

    async fn sum(&self, request: Request<Streaming<Number>>) -> Result<Number, Error> {
        self.tester.sum(request).await
    }

    async fn shout(&self, request: Request<Streaming<Line>>, stream: ServerStream<Line>) -> Result<(), Error> {
        self.tester.shout(request, stream).await
    }
}

fn number(name: &str) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let service = match micro::Service::new("testing") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}", e.detail);
            std::process::exit(2);
        }
    };
    let node = std::env::var("TESTER_NODE").unwrap_or_else(|_| "tester".into());
    let forward = std::env::var("TESTER_FORWARD").ok().map(|next| {
        let publish = std::env::var("TESTER_PUBLISH").ok().map(|topic| Publisher::new(topic, service.client().clone()));
        (TesterClient::new(next, service.client().clone()), publish)
    });
    let handler = Node {
        tester: Tester { node },
        forward,
        fail_code: number("TESTER_FAIL_CODE") as u16,
        delay: std::time::Duration::from_millis(number("TESTER_DELAY_MS")),
        capacity: Some(number("TESTER_CAPACITY") as usize).filter(|n| *n > 0).map(tokio::sync::Semaphore::new),
    };
    testing::register_tester_handler(service.server(), handler);
    match (std::env::var("TESTER_SUBSCRIBE"), std::env::var("TESTER_QUEUE")) {
        (Ok(topic), Ok(queue)) => {
            let pause = std::time::Duration::from_millis(number("TESTER_HANDLE_MS"));
            let heard = move |req: Request<EchoRequest>| async move {
                tokio::time::sleep(pause).await;
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "heard {}", req.message).and_then(|_| out.flush());
                Ok(())
            };
            let sub =
                micro::server::subscriber::Subscriber::new(topic, "Func", micro::server::subscriber::typed(heard));
            service.server().subscribe(sub.queue(queue));
        }
        (Ok(topic), Err(_)) => {
            micro::server::register_subscriber(service.server(), &topic, |req: Request<EchoRequest>| async move {
                tracing::info!(text = %req.message, "heard");
                Ok(())
            });
        }
        _ => {}
    }
    if let Err(e) = service.run().await {
        eprintln!("{}", e.detail);
        std::process::exit(1);
    }
}
