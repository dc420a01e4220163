//! What the actors of a peer's XML stream share (client sessions, incoming server-to-server
//! links, external components): turning the parser's events into elements, the stream's end,
//! stream errors for bad input and a lost transport, and closing with `system-shutdown` when
//! the server stops.

use actix::prelude::*;

use crate::shared::Shared;
use crate::xml::{Element, ParseError, StreamEvent};
use crate::xmpp::StreamError;

/// A stream actor, as [`handle_event`] drives it.
pub trait StreamActor: Actor<Context = Context<Self>> {
    /// A top-level element of the peer's stream.
    fn on_element(&mut self, el: Element, ctx: &mut Context<Self>);
    /// Send the stream error `err`, close the stream and stop (`why` for the log).
    fn close(&mut self, err: StreamError, why: &'static str, ctx: &mut Context<Self>);
    /// The peer ended its stream.
    fn on_end(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
    /// The transport failed (no stream error can reach the peer).
    fn on_lost(&mut self, ctx: &mut Context<Self>);
}

/// One event of the peer's stream: elements to the actor, the end, and stream errors for a
/// second header and for what the parser refused.
pub fn handle_event<A: StreamActor>(
    act: &mut A,
    item: Result<StreamEvent, ParseError>,
    ctx: &mut Context<A>,
) {
    match item {
        Ok(StreamEvent::Element(el)) => act.on_element(el, ctx),
        Ok(StreamEvent::End) => act.on_end(ctx),
        Ok(StreamEvent::Header(_)) => act.close(StreamError::NotWellFormed, "second header", ctx),
        Err(e) => match crate::tls::parse_error_condition(&e) {
            Some(c) => act.close(c, "bad input", ctx),
            None => act.on_lost(ctx),
        },
    }
}

/// Close the actor's stream with `system-shutdown` when the server starts shutting down.
pub fn close_on_shutdown<A: StreamActor>(shared: &Shared, act: &A, ctx: &mut Context<A>) {
    let mut shutdown = shared.shutdown_signal();
    let wait = async move {
        let _ = shutdown.wait_for(|down| *down).await;
    };
    ctx.spawn(
        wait.into_actor(act)
            .map(|_, act, ctx| act.close(StreamError::SystemShutdown, "server shutting down", ctx)),
    );
}

/// The actix `StreamHandler` of a [`StreamActor`] whose actor stops when the peer's stream
/// ends: every event to [`handle_event`].
macro_rules! stream_handler {
    ($t:ty) => {
        impl actix::StreamHandler<Result<crate::xml::StreamEvent, crate::xml::ParseError>> for $t {
            fn handle(
                &mut self,
                item: Result<crate::xml::StreamEvent, crate::xml::ParseError>,
                ctx: &mut actix::Context<Self>,
            ) {
                crate::actors::stream::handle_event(self, item, ctx);
            }

            fn finished(&mut self, ctx: &mut actix::Context<Self>) {
                actix::ActorContext::stop(ctx);
            }
        }
    };
}
pub(crate) use stream_handler;
