"""Turn a claimed send into an OutgoingEmail: content, unsubscribe headers and tags."""

from datetime import datetime

from core.campaign import CAMPAIGNS
from core.claims import ClaimedSend
from core.emails import EmailContext, render_step
from core.mailers import OutgoingEmail
from core.unsubscribe import unsubscribe_headers, unsubscribe_url


class Composer:
    """Renders emails for one deployment (its public URL, secret key, postal address and booking link)."""

    def __init__(self, *, public_base_url: str, secret_key: str, postal_address: str, booking_url: str):
        self._public_base_url = public_base_url
        self._secret_key = secret_key
        self._postal_address = postal_address
        self._booking_url = booking_url

    def compose(self, send: ClaimedSend, *, at: datetime) -> OutgoingEmail:
        """`at`: when the email goes out, for copy that depends on the season. A replay must pass the
        same instant (its batch's first attempt), so it carries exactly the content first sent."""
        campaign = CAMPAIGNS[send.campaign]
        url = unsubscribe_url(self._public_base_url, self._secret_key, send.contact_id)
        ctx = EmailContext(send.first_name, send.business_name, send.segment, send.red_systems,
                           send.orange_systems, booking_url=self._booking_url, season_over=campaign.season_over(at))
        rendered = render_step(campaign.step(send.step), ctx, unsubscribe_url=url,
                               postal_address=self._postal_address)
        return OutgoingEmail(
            send_id=send.id,
            to=send.email,
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            headers=unsubscribe_headers(url),
            tags={"campaign": campaign.name, "step": str(send.step), "segment": send.segment},
        )
