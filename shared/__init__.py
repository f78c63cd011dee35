"""WhatsApp Archiver: archives TeleMessage-captured WhatsApp records into Exchange Online mailboxes."""
