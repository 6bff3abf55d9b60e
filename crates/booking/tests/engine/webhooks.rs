//! Webhook events against a real store, on both engines, across a stop of the delivery worker:
//! a booking's transaction queues the event; while no worker runs it waits in the store, and the
//! worker of the next start fans it out and delivers it.

use std::sync::Mutex;

use boxoffice_booking::webhook::{EventSet, Settings, WebhookEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::*;

/// A receiver answering `200` to every request; the bodies it got.
async fn receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let received = bodies.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let received = received.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                // Until the headers and as long a body as they announce.
                while let Ok(read @ 1..) = socket.read(&mut buffer).await {
                    request.extend_from_slice(&buffer[..read]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length = (head.lines())
                        .filter_map(|line| line.split_once(':'))
                        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, value)| value.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        received.lock().unwrap().push(body.to_owned());
                        break;
                    }
                }
                let answer = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    (url, bodies)
}

fn deliver(engine: &Engine, owner: Uuid) {
    let settings = Settings {
        allow_private: true,
        ..Settings::default()
    };
    engine
        .service
        .deliver_webhooks(settings, owner, &TaskTracker::new())
        .unwrap();
}

on_every_backend! {
    async fn an_event_queued_while_no_worker_runs_is_delivered_after_the_restart(backend: Backend) {
        let dir = tempfile::tempdir().unwrap();
        let (url, bodies) = receiver().await;
        let owner = Uuid::now_v7();
        let first = reopen(&backend, &dir).await;
        deliver(&first, owner);
        let events: EventSet = [WebhookEvent::BookingConfirmed].into_iter().collect();
        let endpoint = first.service.create_webhook(&url, events).await.unwrap();
        drop(first);

        // A run without the worker: the booking queues its event, and nothing fans it out.
        let idle = reopen(&backend, &dir).await;
        let (concert_id, seats) = concert(&idle, in_a_day(), &[5]).await;
        let booking = created(idle.service.book(customer(), concert_id, seats[0], None).await.unwrap());
        let queued = "SELECT count(*) FROM webhook_events WHERE subject_id = $1";
        assert_eq!(count_of(&idle, queued, booking.id).await, 1);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let fanned = "SELECT count(*) FROM webhook_deliveries WHERE subject_id = $1";
        assert_eq!(count_of(&idle, fanned, booking.id).await, 0);
        drop(idle);

        let next = reopen(&backend, &dir).await;
        deliver(&next, owner);
        let id = booking.id.to_string();
        for _ in 0..100 {
            if bodies.lock().unwrap().iter().any(|body| body.contains(&id)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(bodies.lock().unwrap().iter().any(|body| body.contains(&id)), "not delivered");
        let deliveries = next
            .service
            .webhook_deliveries(endpoint.endpoint.id, None, 10)
            .await
            .unwrap();
        assert_eq!(deliveries.len(), 1);
    }
}
