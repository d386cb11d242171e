//! The hub channel: one connection, many rooms, and direct messages to
//! users, over the JSON protocol of [`protocol`]. The server stamps every
//! delivery with the sender's identity; a refused request is answered with
//! an error and the connection stays. Room messages and direct messages
//! reach the other nodes too; an `ack` counts this node's recipients.

pub(crate) mod protocol;

use bytes::Bytes;
use serde_json::value::RawValue;

use self::protocol::{ErrorCode, Request};
use super::{JoinError, Membership, deliver_to_user, members::queue, target};
use crate::{
    cluster::Target,
    config::ChannelConfig,
    http::route::is_valid_room_name,
    message::{Message, MessageKind},
    ws::encoder::Outgoing,
};

/// Handles one client message on a hub channel.
pub(super) fn dispatch(
    membership: &mut Membership,
    config: &ChannelConfig,
    kind: MessageKind,
    payload: &[u8],
) {
    let text = match kind {
        // The session has validated text as UTF-8.
        MessageKind::Text => std::str::from_utf8(payload).unwrap_or_default(),
        MessageKind::Binary => "",
    };
    let answer = match protocol::parse(text) {
        Ok((request, id)) => handle(membership, config, request, id),
        Err((code, id)) => Some(protocol::error(code, id)),
    };
    if let Some(answer) = answer {
        reply(membership, config, answer);
    }
}

/// Carries out one request; the answer to send back, if any.
fn handle(
    membership: &mut Membership,
    config: &ChannelConfig,
    request: Request<'_>,
    id: Option<&str>,
) -> Option<String> {
    let refuse = |code| Some(protocol::error(code, id));
    match request {
        Request::Join { room } => {
            if !is_valid_room_name(room) {
                return refuse(ErrorCode::BadRoom);
            }
            if membership.rooms.iter().all(|joined| joined.name() != room) {
                if !membership.may_join(config, room) {
                    return refuse(ErrorCode::Forbidden);
                }
                if membership.rooms.len() >= config.max_rooms_per_connection {
                    return refuse(ErrorCode::TooManyRooms);
                }
                if let Err(error) = membership.enter(config, room) {
                    return refuse(match error {
                        JoinError::RoomFull => ErrorCode::RoomFull,
                        JoinError::TooManyRooms | JoinError::ChannelFull | JoinError::Closing => {
                            ErrorCode::ChannelFull
                        }
                    });
                }
            }
            Some(protocol::joined(room, id))
        }
        Request::Leave { room } => {
            membership.exit(room);
            Some(protocol::left(room, id))
        }
        Request::Message { room, payload } => {
            let Some(joined) = membership.rooms.iter().find(|joined| joined.name() == room) else {
                return refuse(ErrorCode::NotJoined);
            };
            if !membership.may_publish(config, Some(room)) {
                return refuse(ErrorCode::Forbidden);
            }
            let text = protocol::room_message(room, membership.user.as_deref(), payload);
            let message = Message::text(text);
            let except = (!config.echo_to_sender).then_some(membership.id);
            let channel = &membership.channel;
            let delivered = channel.fan_out(
                config,
                &joined.members,
                MessageKind::Text,
                message.payload().clone(),
                except,
            );
            channel
                .remote
                .publish(|| target(&config.name, Some(room)), &message);
            id.map(|id| protocol::ack(delivered, id))
        }
        Request::Direct { to, payload } => {
            let Some(from) = membership.user.as_deref() else {
                return refuse(ErrorCode::NoIdentity);
            };
            // A direct message needs a grant for the channel itself.
            if !membership.may_publish(config, None) {
                return refuse(ErrorCode::Forbidden);
            }
            let channel = &membership.channel;
            let message = Message::text(protocol::direct_message(from, payload));
            let delivered = deliver_to_user(
                &channel.users,
                &channel.counters,
                to,
                Some((channel, config)),
                &message,
            );
            channel.remote.publish(
                || Target::User {
                    user: to.to_owned(),
                    channel: Some(config.name.clone()),
                },
                &message,
            );
            id.map(|id| protocol::ack(delivered, id))
        }
    }
}

/// Queues an answer for the connection itself.
fn reply(membership: &Membership, config: &ChannelConfig, text: String) {
    let channel = &membership.channel;
    let size = text.len();
    let item = Outgoing::Message(MessageKind::Text, Bytes::from(text));
    if queue(&membership.outbox, item, &channel.counters) {
        channel.counters.traffic.record_sent(config.kind, 1, size);
    }
}

/// The payload of an API publish to a hub room, if it is JSON text.
pub(super) fn api_payload(message: &Message) -> Option<&str> {
    let text = std::str::from_utf8(message.payload()).ok()?;
    (message.kind() == MessageKind::Text && serde_json::from_str::<&RawValue>(text).is_ok())
        .then_some(text)
}
