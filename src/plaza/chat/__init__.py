"""Real-time chat: conversations, messages, receipts and typing, over REST and the WebSocket."""
